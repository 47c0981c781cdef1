"""What a SupabaseStore sends and gets back over PostgREST: rows as JSON, and Run/LogLine.

PostgREST answers a ``jobtail_*`` function with JSON objects (timestamps as text, numbers that
may be null) and takes a batch of lines as JSON values; these conversions are pure functions,
kept apart from the calls in ``supabase.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .base import LogLine, Run, RunStatus, dump_pg_json, level_number


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def _run(data: Mapping[str, Any]) -> Run:
    return Run(
        run_id=data["run_id"],
        upload_id=data["upload_id"],
        service_name=data["service_name"],
        status=RunStatus(data["status"]),
        created_at=datetime.fromisoformat(data["created_at"]).astimezone(UTC),
        started_at=_dt(data.get("started_at")),
        finished_at=_dt(data.get("finished_at")),
        heartbeat_at=_dt(data.get("heartbeat_at")),
        last_seq=int(data.get("last_seq") or 0),
        error=data.get("error"),
        epoch=int(data.get("epoch") or 0),
        omitted=int(data.get("omitted") or 0),
    )


def _line(data: Mapping[str, Any]) -> LogLine:
    return LogLine(
        seq=int(data["seq"]),
        timestamp=datetime.fromisoformat(data["timestamp"]).astimezone(UTC),
        log_level=data["log_level"],
        message=data["message"],
        fields=data.get("fields") or None,
    )


def _payload(line: LogLine) -> dict[str, Any]:
    """One line as JSON values; NUL, which PostgreSQL text cannot hold, becomes U+FFFD."""
    fields = None
    if line.fields:
        fields = json.loads(dump_pg_json(line.fields))
    return {
        "seq": line.seq,
        "timestamp": line.timestamp.isoformat(),
        "log_level": line.log_level,
        "level_no": level_number(line.log_level),
        "message": line.message.replace("\x00", "\ufffd"),
        "fields": fields,
    }
