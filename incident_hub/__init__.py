"""incident-hub: one canonical record of every incident, kept in step with the vendors' tools."""

from __future__ import annotations

__version__ = "0.1.0"
