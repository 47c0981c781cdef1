"""Durable Streams: generic append-only streams in the log store's database, and each run's
log readable as a JSON-mode stream. ``base`` is the protocol, one module per backend,
``runs`` the run-log adapter, ``service`` what the HTTP layer calls."""

from __future__ import annotations

from ..store import LogStore
from .base import (
    Appended,
    AppendRequest,
    Chunk,
    Created,
    CreateRequest,
    Expiry,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
    StreamError,
    StreamGone,
    StreamInvalid,
    StreamMeta,
    StreamNotFound,
    StreamStore,
    StreamUnsupported,
    format_offset,
    is_json,
    is_text,
    parse_offset,
)
from .service import Streams, next_cursor

__all__ = [
    "AppendRequest", "Appended", "Chunk", "CreateRequest", "Created", "Expiry", "Producer",
    "SequenceGapError", "StaleEpochError", "StreamClosedError", "StreamConflict", "StreamError",
    "StreamGone", "StreamInvalid", "StreamMeta", "StreamNotFound", "StreamStore",
    "StreamUnsupported", "Streams", "format_offset", "is_json", "is_text", "next_cursor",
    "open_streams", "parse_offset",
]  # fmt: skip


def open_streams(
    store: LogStore, *, listen: bool = True, create: bool = True
) -> StreamStore | None:
    """Generic stream storage beside a log store, in the same database; ``None`` for a store
    of another kind (run logs are still readable as streams). ``listen=False``: no PostgreSQL
    LISTEN connection (a user that never waits for appends: the janitor). ``create=False``: no
    SQLite tables made (the janitor's sweep: a file without them has nothing to sweep; the
    other backends' come from migrations)."""
    from ..store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from .sqlite import SQLiteStreams

        return SQLiteStreams.from_store(store, create=create)
    return _postgres_streams(store, listen) or _supabase_streams(store)


def _postgres_streams(store: LogStore, listen: bool) -> StreamStore | None:
    try:
        from ..store.postgres import PostgresStore
    except ImportError:  # psycopg not installed: not a PostgresStore
        return None
    if isinstance(store, PostgresStore):
        from .postgres import PostgresStreams

        return PostgresStreams.from_store(store, listen=listen)
    return None


def _supabase_streams(store: LogStore) -> StreamStore | None:
    try:
        from ..store.supabase import SupabaseStore
    except ImportError:  # supabase not installed
        return None
    if isinstance(store, SupabaseStore):
        from .supabase import SupabaseStreams

        return SupabaseStreams.from_store(store)
    return None
