"""Which failures of a Supabase call are worth sending it again, and what the others mean.

A timeout, a dropped connection, a 5xx from the gateway or a transient PostgREST/PostgreSQL code
is retried (``SupabaseStore.rpc``); of those, only a failure before the request left is safe to
resend for a call that is not idempotent. The others: the codes of a missing function or table
and of a refused key (``SupabaseStore._error`` says what to do about each), and the search's
refusals (a bad regex, a cancelled statement) as the search's own errors.
"""

from __future__ import annotations

import httpx
from postgrest.exceptions import APIError

from .pg_search import CancelledError, PatternRefusedError

RETRY_CODES = frozenset(
    {"PGRST000", "PGRST001", "PGRST002", "PGRST003", "40001", "40P01", "57P01", "57P03"}
)
"""PostgREST and PostgreSQL error codes of transient failures (besides HTTP 5xx statuses)."""
MISSING_CODES = frozenset({"PGRST202", "PGRST205", "42883", "42P01"})
AUTH_CODES = frozenset({"401", "403", "42501", "PGRST301", "PGRST302"})
TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors before the request left: safe to retry even a call that is not idempotent."""


def _from_gateway(exc: APIError) -> bool:
    """An HTTP 5xx without a PostgREST body (its code is the 3-digit status): the call may
    have run behind the gateway that answered."""
    code = exc.code or ""
    return len(code) == 3 and code.isdigit() and code >= "500"


def _transient(exc: APIError) -> bool:
    """An HTTP 5xx without a PostgREST body, or a retryable PostgREST/SQL code."""
    code = exc.code or ""
    return _from_gateway(exc) or code in RETRY_CODES or code[:2] in ("08", "53")


def _search_refusal(exc: APIError) -> Exception | None:
    if exc.code == "2201B":  # invalid_regular_expression
        return PatternRefusedError()
    if exc.code == "57014":  # query_canceled
        return CancelledError()
    return None
