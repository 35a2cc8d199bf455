"""The write transaction every incident operation runs in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from incident_hub.store.db import Database


@contextmanager
def write(db: Database, on_commit: Callable[[], None], outer: Session | None = None) -> Iterator[Session]:
    """A write transaction; after it commits, `on_commit` runs (it wakes the dispatcher) if the work
    queued deliveries. With `outer`, the work joins that transaction and its owner commits (and wakes)."""
    if outer is not None:
        yield outer
        return
    with db.write() as session:
        yield session
        queued = session.info.pop("deliveries_queued", False)
    if queued:
        on_commit()
