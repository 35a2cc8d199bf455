"""The unified REST API (FastAPI)."""
