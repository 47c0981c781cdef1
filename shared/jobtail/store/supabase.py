"""Supabase store: supabase-py over PostgREST, every operation one rpc() of a jobtail_* function.

The SQL is the PostgresStore's (``supabase/migrations``), called over HTTPS with the service key:
reads as GET (PostgREST runs them read-only), writes as POST with a JSON body. Timeouts, network
errors and 5xx replies are retried with bounded exponential backoff, which is safe because every
call is idempotent: appends on (run_id, seq), create_run on its run_id, start_run through its
claim timestamp, finish_run and heartbeat by status (``rpc(idempotent=False)`` is for callers
whose calls are not: the generic streams' plain appends, ``streams/supabase.py``). PostgREST
cannot push changes to other processes, so listeners fire only for this process's writes and
tails poll: every 0.1 s while lines flow, backing off to 2 s when idle (``next_poll_interval``).
PostgREST's "max rows" setting (1000 on Supabase by default) may cap a read below ``limit``;
readers page by cursor. Which failures are retried: ``supabase_errors``; rows to and from JSON:
``supabase_rows``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, SupabaseException, create_client

from .base import (
    LogLine,
    LogStore,
    Run,
    RunActiveError,
    RunStatus,
    StoreError,
    level_number,
    new_run_id,
    refusal,
    utcnow,
)
from .matching import SearchHits, SearchQuery
from .pg_search import Plan as SearchPlan
from .pg_search import min_level_number
from .pg_search import plan as search_plan
from .pg_search import scan as scan_windows
from .supabase_errors import (
    AUTH_CODES,
    MISSING_CODES,
    TRANSPORT_ERRORS,
    UNSENT_ERRORS,
    _from_gateway,
    _search_refusal,
    _transient,
)
from .supabase_rows import _line, _payload, _run

SEARCH_ROWS = 1000
"""Seqs asked of one ``jobtail_search`` call: Supabase's default PostgREST "max rows", so a
full answer is known to be possibly cut and the next call goes on from its last seq."""


class SupabaseStore(LogStore):
    """Runs and lines in a Supabase project, through the client it is given."""

    poll_interval = 0.1
    max_poll_interval = 2.0
    search_window = 100_000  # seqs per jobtail_search call at most
    _folds_unicode: bool | None = None  # whether the database's lower() folds beyond ASCII

    def __init__(
        self,
        client: Client,
        *,
        attempts: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.client = client
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._owned_http: httpx.Client | None = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, timeout: float = 10.0
    ) -> SupabaseStore:
        """SUPABASE_URL and SUPABASE_SERVICE_KEY (or SUPABASE_SERVICE_ROLE_KEY)."""
        env = os.environ if environ is None else environ
        url = env.get("SUPABASE_URL")
        key = env.get("SUPABASE_SERVICE_KEY") or env.get("SUPABASE_SERVICE_ROLE_KEY")
        if not url:
            raise StoreError("SUPABASE_URL is not set: the project URL, https://<ref>.supabase.co")
        if not key:
            raise StoreError(
                "SUPABASE_SERVICE_KEY (or SUPABASE_SERVICE_ROLE_KEY) is not set:"
                " the project's service role key"
            )
        http = httpx.Client(timeout=timeout, http2=True, follow_redirects=True)
        try:
            client = create_client(url, key, options=ClientOptions(httpx_client=http))
        except SupabaseException as exc:
            http.close()
            raise StoreError(f"cannot use SUPABASE_URL {url!r}: {exc.message}") from exc
        store = cls(client)
        store._owned_http = http
        return store

    def next_poll_interval(self, idle_polls: int) -> float:
        """0.1 s while lines flow, doubling per idle poll up to 2 s."""
        return min(self.poll_interval * 2.0 ** min(max(idle_polls, 0), 16), self.max_poll_interval)

    # -- plumbing ---------------------------------------------------------------------------
    def rpc(
        self,
        fn: str,
        params: dict[str, Any],
        *,
        read: bool = False,
        idempotent: bool = True,
        refuse: Callable[[APIError], Exception | None] | None = None,
    ) -> Any:
        """Call one SQL function; retry transient failures with bounded exponential backoff.

        ``idempotent=False``: a call that may have run (a timeout, a dropped connection) is not
        sent again, only one that surely did not (refused connection, PostgREST's 5xx codes).
        ``refuse`` turns a non-transient error into the caller's own exception (or None)."""
        error: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            builder = self.client.rpc(fn, params, get=read)
            if hasattr(builder, "retry"):
                builder = builder.retry(False)  # one retry policy: ours (postgrest's sleeps 1 s+)
            try:
                return builder.execute().data
            except UNSENT_ERRORS as exc:
                error = exc
            except TRANSPORT_ERRORS as exc:
                if not idempotent:
                    raise StoreError(
                        f"Supabase call {fn} may or may not have run ({exc!r}): not sent again"
                    ) from exc
                error = exc
            except APIError as exc:
                if not _transient(exc) or (not idempotent and _from_gateway(exc)):
                    mapped = refuse(exc) if refuse is not None else None
                    raise (mapped or self._error(fn, exc)) from exc
                error = exc
        raise StoreError(
            f"Supabase call {fn} failed after {self.attempts} attempts: {error!r}"
        ) from error

    def _error(self, fn: str, exc: APIError) -> StoreError:
        code = exc.code or ""
        if code in ("PT403", "PT409") and (refused := refusal(exc.details)):
            return refused
        if code in MISSING_CODES:
            return StoreError(
                f"the Supabase project lacks jobtail's schema ({exc.message}): apply"
                " supabase/migrations (`supabase db push` or `jobtail migrate <postgres url>`)"
            )
        if code in AUTH_CODES:
            return StoreError(
                f"Supabase refused {fn} ({code}: {exc.message}): use the service role key"
                " in SUPABASE_SERVICE_KEY"
            )
        return StoreError(f"Supabase {fn} failed ({code}): {exc.message}")

    def check(self) -> None:
        self.rpc("jobtail_list_runs", {"p_limit": 1}, read=True)

    def close(self) -> None:
        """Close the HTTP session if from_env opened it; a client passed in is the caller's."""
        if self._owned_http is not None:
            self._owned_http.close()

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, upload_id: str, service_name: str, run_id: str | None = None) -> Run:
        wanted = run_id or new_run_id()
        params = {"p_run_id": wanted, "p_upload_id": upload_id, "p_service_name": service_name}
        run = _run(self.rpc("jobtail_create_run", params))
        if run.run_id != wanted:
            raise RunActiveError(run)
        self.listeners.notify(run.run_id)
        return run

    def get_run(self, run_id: str) -> Run | None:
        rows = self.rpc("jobtail_get_run", {"p_run_id": run_id}, read=True)
        return _run(rows[0]) if rows else None

    def list_runs(
        self, upload_id: str | None = None, service_name: str | None = None, limit: int = 100
    ) -> list[Run]:
        params: dict[str, Any] = {"p_limit": limit}
        if upload_id is not None:
            params["p_upload_id"] = upload_id
        if service_name is not None:
            params["p_service_name"] = service_name
        return [_run(row) for row in self.rpc("jobtail_list_runs", params, read=True)]

    def claim_run(
        self, run_id: str, *, takeover_stale_before: datetime | None = None
    ) -> Run | None:
        params = {"p_run_id": run_id, "p_claim": utcnow().isoformat()}
        if takeover_stale_before is not None:
            params["p_takeover_before"] = takeover_stale_before.isoformat()
        rows = self.rpc("jobtail_claim_run", params)
        if not rows:
            return None
        self.listeners.notify(run_id)
        return _run(rows[0])

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        params: dict[str, Any] = {"p_run_id": run_id}
        if epoch is not None:
            params["p_epoch"] = epoch
        self.rpc("jobtail_heartbeat", params)

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        error: str | None = None,
        *,
        lines: Sequence[LogLine] = (),
        epoch: int | None = None,
        if_stale_before: datetime | None = None,
        omitted: int = 0,
    ) -> bool:
        if status.active:
            raise ValueError(f"finish_run needs a final status, not {status}")
        params: dict[str, Any] = {"p_run_id": run_id, "p_status": status.value, "p_error": error}
        if lines:
            params["p_lines"] = [_payload(line) for line in lines]
        if epoch is not None:
            params["p_epoch"] = epoch
        if if_stale_before is not None:
            params["p_stale_before"] = if_stale_before.isoformat()
        if omitted:
            params["p_omitted"] = omitted
        closed = bool(self.rpc("jobtail_finish_run", params))
        if closed:
            self.listeners.notify(run_id)
        return closed

    def stale_runs(
        self, heartbeat_before: datetime, queued_before: datetime | None = None, limit: int = 1000
    ) -> list[Run]:
        params: dict[str, Any] = {"p_heartbeat_before": heartbeat_before.isoformat()}
        if queued_before is not None:
            params["p_queued_before"] = queued_before.isoformat()
        params["p_limit"] = limit
        return [_run(row) for row in self.rpc("jobtail_stale_runs", params, read=True)]

    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        params = {"p_after": after, "p_limit": limit}
        return [str(run_id) for run_id in self.rpc("jobtail_restart_heartbeats", params)]

    def clock(self) -> datetime:
        return datetime.fromisoformat(str(self.rpc("jobtail_clock", {}, read=True))).astimezone(UTC)

    def queued_runs(
        self, after: tuple[datetime, str] | None = None, limit: int = 1000
    ) -> list[Run]:
        params: dict[str, Any] = {"p_limit": limit}
        if after is not None:
            params |= {"p_after_created": after[0].isoformat(), "p_after_run_id": after[1]}
        return [_run(row) for row in self.rpc("jobtail_queued_runs", params, read=True)]

    def purge(self, finished_before: datetime) -> int:
        return int(self.rpc("jobtail_purge", {"p_finished_before": finished_before.isoformat()}))

    # -- lines ------------------------------------------------------------------------------
    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        params: dict[str, Any] = {
            "p_run_id": run_id,
            "p_lines": [_payload(line) for line in lines],
        }
        if epoch is not None:
            params["p_epoch"] = epoch
        last = int(self.rpc("jobtail_append", params))
        self.listeners.notify(run_id)
        return last

    def read(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
    ) -> list[LogLine]:
        params: dict[str, Any] = {"p_run_id": run_id, "p_after": after, "p_limit": limit}
        if min_level is not None:
            params["p_min_level_no"] = level_number(min_level)
        if before is not None:
            params["p_before"] = before
        return [_line(row) for row in self.rpc("jobtail_read", params, read=True)]

    def search(
        self, run_id: str, query: SearchQuery, *, after: int, upto: int, limit: int, deadline: float
    ) -> SearchHits:
        """In SQL, one ``jobtail_search`` call per window of seqs (``jobtail.store.pg_search``):
        no line crosses the network to be matched. PostgREST sets no per-call timeout we
        control, so the windows shrink to what fits a tenth of a second and the deadline is
        kept between calls. A pattern PostgreSQL cannot run the same way is matched in Python."""
        query.check()
        if self._folds_unicode is None:
            self._folds_unicode = bool(self.rpc("jobtail_search_folds_unicode", {}, read=True))
        how = search_plan(query, self._folds_unicode)
        if how is not None:
            found = self._search_sql(run_id, query, how, (after, upto), limit, deadline)
            if found is not None:
                return found
        return super().search(run_id, query, after=after, upto=upto, limit=limit, deadline=deadline)

    def _search_sql(
        self,
        run_id: str,
        query: SearchQuery,
        how: SearchPlan,
        span: tuple[int, int],
        limit: int,
        deadline: float,
    ) -> SearchHits | None:
        params: dict[str, Any] = {
            "p_run_id": run_id,
            "p_min_level": min_level_number(query),
            "p_mode": how.mode,
            "p_needle": how.needle,
        }

        def fetch(lo: int, hi: int, want: int, _deadline: float) -> list[int]:
            window = {**params, "p_after": lo, "p_upto": hi, "p_limit": want}
            rows = self.rpc("jobtail_search", window, read=True, refuse=_search_refusal)
            return [int(seq) for seq in rows]

        after, upto = span
        return scan_windows(
            fetch,
            after=after,
            upto=upto,
            limit=limit,
            deadline=deadline,
            window=self.search_window,
            page=SEARCH_ROWS,
        )
