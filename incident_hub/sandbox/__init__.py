"""Vendor sandboxes: small HTTPS emulators of each vendor's documented API, for demo, tests and benchmarks."""
