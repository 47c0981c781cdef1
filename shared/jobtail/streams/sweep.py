"""The janitor's sweep of expired streams, over the stream tables beside a log store.

A stream past its TTL or ``Stream-Expires-At`` is removed when a request meets it
(``base.expiring``); one nobody asks for again would keep its rows for good, so the janitor
removes those too (``StreamStore.sweep_expired``), by the store's clock as every expiry.
Its own failure is a warning, not the sweep's: runs are the janitor's first job, and a store
refusing this part (a database not migrated to ``0016_stream_sweep.sql``) must not read as an
outage that stops it failing dead runs.
"""

from __future__ import annotations

import logging
import sqlite3

from ..store.base import LogStore, StoreError
from . import open_streams
from .base import SWEEP_BATCH, StreamError

log = logging.getLogger(__name__)


def sweep_streams(store: LogStore, batch: int = SWEEP_BATCH) -> int:
    """Remove the expired streams in ``store``'s database; how many (0 for a store that has no
    stream tables, or when the sweep failed: it is logged, and the next sweep tries again)."""
    try:
        streams = open_streams(store, listen=False, create=False)
        if streams is None:
            return 0
        try:
            return streams.sweep_expired(batch)
        finally:
            streams.close()
    except (StreamError, StoreError, OSError, sqlite3.Error) as exc:  # a full disk, a lock
        log.warning("janitor: could not sweep the expired streams: %s", exc)
        return 0
