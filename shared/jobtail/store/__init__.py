"""Log stores: the protocol in ``base`` and one module per backend, chosen by ``from_url``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .base import (
    LEVELS,
    LogLine,
    LogStore,
    Run,
    RunActiveError,
    RunNotFoundError,
    RunStatus,
    StoreError,
)

__all__ = [
    "LEVELS",
    "LogLine",
    "LogStore",
    "Run",
    "RunActiveError",
    "RunNotFoundError",
    "RunStatus",
    "StoreError",
    "from_url",
]


def from_url(url: str, data_dir: Path | str = ".jobtail") -> LogStore:
    """Open the store a URL names: ``sqlite:///path``, ``postgresql://...`` or ``supabase``.

    ``sqlite:///`` with no path means ``store.db`` in the data folder.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc:
            raise StoreError(f"SQLite URL {url!r} has a host; use sqlite:///relative or ////abs")
        options = parse_qs(parts.query)
        synchronous = options.get("synchronous", ["NORMAL"])[0]
        return SQLiteStore(path or Path(data_dir) / "store.db", synchronous=synchronous)
    if scheme in ("postgres", "postgresql"):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                "the postgres store needs psycopg: pip install 'jobtail[postgres]'"
            ) from exc
        return PostgresStore.from_url(url)
    if scheme in ("supabase", "") and url.split(":")[0] == "supabase":
        try:
            from .supabase import SupabaseStore
        except ImportError as exc:
            raise StoreError(
                "the supabase store needs supabase-py: pip install 'jobtail[supabase]'"
            ) from exc
        return SupabaseStore.from_env()
    raise StoreError(
        f"unknown store URL {url!r}: use sqlite:///path, postgresql://user@host/db or supabase"
    )
