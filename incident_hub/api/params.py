"""Shared path and query parameter types.

Row ids, versions and cursors are bounded to what the databases store (a signed 64-bit integer): a larger
number is refused with 422 before it reaches a query, where it would overflow (SQLite) or be out of range
(PostgreSQL) and answer 500.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ROW_ID = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id (1 to 2^63-1).")]
Version = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A version number (1 to 2^63-1).")]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
Cursor = Annotated[
    int | None,
    Query(ge=0, le=MAX_ROW_ID, description="Cursor: the last id of the previous page."),
]
