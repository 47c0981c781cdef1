"""``…/logs/search``: which lines of a run match, a page of seqs at a time (thin: the scan is
``jobtail.search``). A read route, so it sits beside the logs under any router prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, HTTPException, Query

from ...levels import Level
from ...search import SearchPage, SearchQuery, SearchQueryError, SearchTimeoutError, search_run
from ..deps import Context, ContextDep, Routes, TokenQuery, check_token
from .runs import KEY, RUN, IdRef, KeyRef, RunRef, find_run


@dataclass
class SearchParams:
    """What to look for and where in the run to look."""

    q: Annotated[str, Query(max_length=500, description="text or pattern; empty: every line")] = ""
    regex: Annotated[bool, Query(description="q is a (Python) regular expression")] = False
    case: Annotated[bool, Query(description="match case")] = False
    level: Annotated[Level | None, Query(description="minimum severity")] = None
    after: Annotated[int, Query(ge=0, description="scan lines with seq > after")] = 0
    upto: Annotated[int | None, Query(ge=0, description="scan no further (default: now)")] = None
    limit: Annotated[int, Query(ge=1, le=100_000, description="matches per page")] = 10_000
    token: TokenQuery = None


SearchQueryParams = Annotated[SearchParams, Depends()]


async def search_logs(ref: KeyRef, params: SearchQueryParams, context: ContextDep) -> Any:
    """Seqs of the matching lines in order; go on from ``next_after`` until it is null.

    Each answer scans for about a second at most: ``timed_out`` says it stopped there (go on
    from ``next_after``); a pattern that gets nowhere in that time is refused with 422."""
    return await _search(context, ref, params)


async def search_run_logs(ref: IdRef, params: SearchQueryParams, context: ContextDep) -> Any:
    """Seqs of the matching lines in order; go on from ``next_after`` until it is null."""
    return await _search(context, ref, params)


async def _search(context: Context, ref: RunRef, params: SearchParams) -> Any:
    run = await anyio.to_thread.run_sync(find_run, context.store, ref)
    check_token(context, run.run_id, params.token)
    query = SearchQuery(
        params.q, params.regex, params.case, params.level.value if params.level else None
    )
    upto = run.last_seq if params.upto is None else min(params.upto, run.last_seq)

    def scan() -> SearchPage:
        return search_run(
            context.store, run.run_id, query, upto=upto, after=params.after, limit=params.limit
        )

    try:
        page = await anyio.to_thread.run_sync(scan)
    except (SearchQueryError, SearchTimeoutError) as exc:
        raise HTTPException(422, str(exc)) from exc
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "last_seq": run.last_seq,
        "upto": page.upto,
        "matches": page.matches,
        "next_after": page.next_after,
        "scanned_to": page.scanned_to,
        "truncated": page.truncated,
        "timed_out": page.timed_out,
    }


def add_routes(routes: Routes) -> None:
    routes.readable(f"{KEY}/logs/search", search_logs, name="jobtail.search")
    routes.readable(f"{RUN}/logs/search", search_run_logs, name="jobtail.run_search")
