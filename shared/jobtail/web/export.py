"""A run's lines as a text or JSON Lines download, up to a seq the file name states.

Lines at or below ``run.last_seq`` are committed and never change, so an export taken while the
run goes on is consistent up to that seq. Each store page becomes one chunk of bytes, framed
by the store as the replay's pages are (one thread hop per 10,000 lines, no Python object per
line on SQLite), which keeps the export at least as fast as the SSE replay.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import StreamingResponse

from ..store import LogStore, Run
from ..store.base import JSON_LINES, TEXT_LINES

PAGE = 10_000


def export_name(run: Run, upto: int, fmt: str) -> str:
    key = f"{run.upload_id}-{run.service_name}-{run.run_id}"
    return f"{key}-upto-{upto}.{'jsonl' if fmt == 'jsonl' else 'log'}"


def export_chunks(
    store: LogStore, run_id: str, upto: int, min_level: str | None, fmt: str
) -> Iterator[bytes]:
    """One chunk per page of lines with seq <= upto, already encoded by the store
    (``read_framed``: built in SQL where the backend can, no Python object per line)."""
    framing = JSON_LINES if fmt == "jsonl" else TEXT_LINES
    after = 0
    while after < upto:
        framed = store.read_framed(run_id, after, PAGE, min_level, upto + 1, framing)
        if framed.count:
            yield framed.data
        if framed.count < PAGE:
            return
        after = framed.last_seq


def export_response(
    store: LogStore,
    run: Run,
    min_level: str | None,
    fmt: str,
    before: int | None = None,
) -> StreamingResponse:
    """The download: ``…-upto-<seq>.log|.jsonl``; ``X-Jobtail-Upto`` says the same seq."""
    upto = run.last_seq if before is None else min(run.last_seq, before - 1)
    media = "application/x-ndjson" if fmt == "jsonl" else "text/plain; charset=utf-8"
    name = export_name(run, upto, fmt)
    return StreamingResponse(
        export_chunks(store, run.run_id, upto, min_level, fmt),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Jobtail-Upto": str(upto),
        },
    )
