"""Jobs the embedding tests run elsewhere: in a child process, and as a Lambda handler."""

from __future__ import annotations

import json
import os
from typing import Any

import jobtail


def import_rows(store_url: str, upload_id: str, rows: int, fail: bool = False) -> None:
    """A job as a user writes it: the whole run in one ``with``."""
    with jobtail.run(store_url, upload_id, "import") as log:
        for n in range(1, rows + 1):
            log.info(f"row {n}", row=n)
        if fail:
            raise RuntimeError("row 4 has no id")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An SQS-triggered Lambda: each message names a run created where it was enqueued."""
    store = os.environ["JOBS_STORE"]
    done = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        with jobtail.run(store, run_id=body["run_id"], heartbeat_interval=0.5) as log:
            remaining = context.get_remaining_time_in_millis()
            log.info(f"processing {body['upload_id']}", remaining_ms=remaining)
            log.progress(100, "done")
        done.append(body["run_id"])
    return {"done": done}
