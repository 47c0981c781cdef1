"""The janitor's sweep of expired streams, over the stream tables beside a log store.

A stream past its TTL or ``Stream-Expires-At`` is removed when a request meets it
(``base.expiring``); one nobody asks for again would keep its rows for good, so the janitor
removes those too (``StreamStore.sweep_expired``), by the store's clock as every expiry.
Its own failure is a warning, not the sweep's: runs are the janitor's first job, and a store
refusing this part (a database not migrated to ``0016_stream_sweep.sql``) must not read as an
outage that stops it failing dead runs.

A janitor that lives on (``jobtail serve``'s, ``router(janitor=True)``'s) sweeps through one
``StreamSweeper``: the stream store (on PostgreSQL a connection pool) is opened at its first
sweep and kept until the janitor stops, not set up again every ``stale_after / 2`` s.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from ..store.base import LogStore, StoreError
from . import open_streams
from .base import SWEEP_BATCH, StreamError, StreamStore

log = logging.getLogger(__name__)

Opener = Callable[[LogStore], StreamStore | None]


def for_sweeps(store: LogStore) -> StreamStore | None:
    """The stream tables beside ``store`` as a sweep uses them: no LISTEN connection, and no
    SQLite tables created (a file without them has nothing to sweep)."""
    return open_streams(store, listen=False, create=False)


class StreamSweeper:
    """Sweeps of ``store``'s database through one stream store, opened at the first sweep
    (again at the next one if it could not be) and closed by ``close``, which waits for a sweep
    under way. ``opener`` makes the stream store (tests count the stores it makes)."""

    def __init__(self, store: LogStore, opener: Opener = for_sweeps) -> None:
        self.store, self._opener = store, opener
        self._streams: StreamStore | None = None
        self._lock = threading.Lock()  # one sweep at a time, and close waits for it
        self._closed = False

    def sweep(self, batch: int = SWEEP_BATCH) -> int:
        """Remove the expired streams; how many (0 for a store that has no stream tables, once
        closed, or when the sweep failed: it is logged, and the next sweep tries again)."""
        with self._lock:
            if self._closed:
                return 0
            try:
                if self._streams is None:
                    self._streams = self._opener(self.store)
                return 0 if self._streams is None else self._streams.sweep_expired(batch)
            except (StreamError, StoreError, OSError, sqlite3.Error) as exc:  # a full disk, a lock
                log.warning("janitor: could not sweep the expired streams: %s", exc)
                return 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            streams, self._streams = self._streams, None
        if streams is not None:
            streams.close()


def sweep_streams(store: LogStore, batch: int = SWEEP_BATCH) -> int:
    """One sweep through a stream store of its own (the scheduled function, ``jobtail sweep``)."""
    sweeper = StreamSweeper(store)
    try:
        return sweeper.sweep(batch)
    finally:
        sweeper.close()
