"""Streams in a Supabase project: the ``jobtail_stream_*`` functions (the PostgreSQL backend's,
``0007_stream_functions.sql``) called by rpc through the Supabase log store's client, with its
retries. A call that may have run is sent again only when running it twice is harmless: reads,
creates (a repeat confirms), producer appends (a repeat is a duplicate); a plain append or a
delete is not. PostgREST cannot push changes, so waiting readers poll (as run streams do here)
and wake at once only for this process's writes.
"""

from __future__ import annotations

from typing import Any

from postgrest.exceptions import APIError

from ..store.base import StoreError
from ..store.supabase import SupabaseStore
from .base import StreamError
from .functions import FunctionStreams, refused


def _json_value(value: Any) -> Any:
    """bytes as PostgreSQL's hex input for ``bytea``; everything else as is."""
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return value


def _refusal(exc: APIError) -> StreamError | None:
    return refused(exc.code, exc.message or "", exc.details)


class SupabaseStreams(FunctionStreams):
    """Generic streams beside a SupabaseStore, through its client."""

    def __init__(self, store: SupabaseStore) -> None:
        super().__init__()
        self.store = store
        self.poll_interval = store.poll_interval

    def next_poll_interval(self, idle_polls: int) -> float:
        """The log store's backoff: every poll is an HTTP request to PostgREST."""
        return self.store.next_poll_interval(idle_polls)

    @classmethod
    def from_store(cls, store: SupabaseStore) -> SupabaseStreams:
        return cls(store)

    def _call(
        self, name: str, params: dict[str, Any], *, get: bool = False, retry: bool = True
    ) -> Any:
        args = {key: _json_value(value) for key, value in params.items() if value is not None}
        try:
            return self.store.rpc(
                f"jobtail_stream_{name}", args, read=get, idempotent=retry, refuse=_refusal
            )
        except StreamError:
            raise
        except StoreError as exc:
            raise StreamError(str(exc)) from exc

    def close(self) -> None:
        """Nothing to release: the client is the log store's."""
