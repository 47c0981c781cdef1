"""``HttpStore``: a job in another process, language runtime or Lambda logs into a run over HTTP,
as a Durable Streams producer, with the run's write token instead of database credentials::

    # the run and its token were made where the job was enqueued (POST /runs/{upload}/{service}/runs
    # or jobtail.producer_token(run_id)); the message carries both
    with jobtail.run("https://jobtail.example.com", run_id=run_id, token=token) as log:
        log.info("parsing")

    # or, holding an API key, the job makes its own run for the key
    with jobtail.run("https://jobtail.example.com", "petstore", "report", token=api_key) as log:
        log.info("parsing")

The token (``jtw_...``) lets it write that one run and nothing else; an API key works too.

Only what a worker does is here: claim (``Producer-Epoch`` = the run's epoch + 1), append lines
(``Producer-Seq`` = the seq before the batch; the server's append is idempotent on each line's
seq, so RunLogger's retries and write-behind batches land exactly once), heartbeat (an empty
POST with ``Jobtail-Heartbeat: true``) and end the run (``Stream-Closed: true`` with the last
lines and ``Jobtail-Run-Status``, one transaction on the server). Refusals come back as the
store's own errors: 403 -> RunFencedError("stale_epoch"), 409 with Stream-Closed ->
RunFencedError("closed"), 409 on a queued run (a write before the claim) ->
RunFencedError("unclaimed"), 409 naming the expected seq -> SeqGapError, 401/403 for the
credential -> CredentialRefused (a RunFencedError: retrying never makes a token valid).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from ..store import LogLine, LogStore, Run, RunStatus, StoreError
from ..store.base import (
    RunActiveError,
    RunFencedError,
    SeqGapError,
    check_writer,
    dump_json,
    utcnow,
)

PRODUCER_ID = "jobtail-worker"
HEARTBEAT = {"Jobtail-Heartbeat": "true"}


class CredentialRefused(RunFencedError):
    """The server refused the worker's credential (expired, another run's, or not one at all):
    no retry can make it valid, so the job stops like a fenced one."""

    def __init__(self, run_id: str, status: int, detail: str) -> None:
        super().__init__(run_id, "refused")
        self.status_code = status
        self.args = (
            f"jobtail server refused the credential for run {run_id} ({status}): {detail}",
        )


class HttpStore(LogStore):
    """The worker's side of a LogStore, over a jobtail server's ``/v1/stream/runs/{run_id}``.
    ``token``: the run's write token (or an API key; ``api_key`` is the same)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__()
        if token and api_key:
            raise ValueError("HttpStore takes a token or an api_key, not both")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"HttpStore needs the jobtail server's http(s) URL, not {url!r}")
        self.url = url.rstrip("/")
        self._own = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(10, read=30))
        credential = token or api_key
        self._headers = {"Authorization": f"Bearer {credential}"} if credential else {}

    def _stream(self, run_id: str) -> str:
        return f"{self.url}/v1/stream/runs/{run_id}"

    def _post(
        self,
        run_id: str,
        epoch: int,
        seq: int,
        body: bytes = b"",
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {
            **self._headers, **(extra or {}), "Producer-Id": PRODUCER_ID,
            "Producer-Epoch": str(epoch), "Producer-Seq": str(seq),
        }  # fmt: skip
        if body:
            headers["Content-Type"] = "application/json"
        try:
            response = self._client.post(self._stream(run_id), content=body, headers=headers)
        except httpx.TransportError as exc:
            raise StoreError(f"jobtail server at {self.url} unreachable: {exc}") from exc
        self._raise_for(run_id, response)
        return response

    def _raise_for(self, run_id: str, response: httpx.Response) -> None:
        code = response.status_code
        if code < 400:
            return
        if code == 401 or (code == 403 and "producer-epoch" not in response.headers):
            raise CredentialRefused(run_id, code, _reason(response))
        if code == 403 and "producer-epoch" in response.headers:
            epoch = int(response.headers["producer-epoch"])
            raise RunFencedError(run_id, "stale_epoch", epoch=epoch)
        if code == 409 and response.headers.get("stream-closed") == "true":
            raise RunFencedError(run_id, "closed")
        if code == 409 and response.headers.get("jobtail-run-status") == "queued":
            epoch = int(response.headers.get("jobtail-run-epoch", "0"))
            raise RunFencedError(run_id, "unclaimed", epoch=epoch, status="queued")
        if code == 409 and "producer-expected-seq" in response.headers:
            expected = int(response.headers["producer-expected-seq"]) + 1
            received = int(response.headers["producer-received-seq"]) + 1
            raise SeqGapError(run_id, expected, received)
        raise StoreError(f"jobtail server refused ({code}): {response.text}")

    # -- what a worker needs ------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run | None:
        try:
            response = self._client.head(self._stream(run_id), headers=self._headers)
        except httpx.TransportError as exc:
            raise StoreError(f"jobtail server at {self.url} unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        self._raise_for(run_id, response)
        h = response.headers
        return Run(
            run_id=run_id,
            upload_id=h.get("jobtail-upload-id", ""),
            service_name=h.get("jobtail-service", ""),
            status=RunStatus(h["jobtail-run-status"]),
            created_at=utcnow(),
            last_seq=int(h["stream-next-offset"].split("_")[0]),
            epoch=int(h["jobtail-run-epoch"]),
        )

    def claim_run(
        self, run_id: str, *, takeover_stale_before: datetime | None = None
    ) -> Run | None:
        run = self.get_run(run_id)
        if run is None or run.status is not RunStatus.QUEUED:
            return None
        try:
            response = self._post(run_id, run.epoch + 1, 0, extra=HEARTBEAT)
        except CredentialRefused:
            raise
        except RunFencedError:
            return None  # another worker claimed it first, with a newer epoch
        if response.status_code != 200:
            return None  # another worker claimed it first: the server took this for its heartbeat
        return self.get_run(run_id)

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        self._post(run_id, self._epoch(run_id, epoch), 0, extra=HEARTBEAT)

    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        if not lines:  # nothing to send, but the writer is checked as for lines
            run = self._run(run_id)
            check_writer(run_id, (run.status, run.epoch, run.last_seq), lines, epoch)
            return run.last_seq
        response = self._post(run_id, self._epoch(run_id, epoch), lines[0].seq - 1, _body(lines))
        return int(response.headers["stream-next-offset"].split("_")[0])

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
        extra = {"Stream-Closed": "true", "Jobtail-Run-Status": status.value}
        if omitted:
            extra["Jobtail-Run-Omitted"] = str(omitted)
        if error:
            extra["Jobtail-Run-Error"] = error.encode("ascii", "replace").decode()[:1000]
        seq = lines[0].seq - 1 if lines else 0
        if lines and lines[0].seq == 0:  # numbered by the server's store, after its last line
            run = self._run(run_id)
            seq, epoch = run.last_seq, run.epoch if epoch is None else epoch
        body = _body(lines) if lines else b""
        response = self._post(run_id, self._epoch(run_id, epoch), seq, body, extra)
        return response.status_code == 200 or (not lines and response.status_code == 204)

    def _epoch(self, run_id: str, epoch: int | None) -> int:
        return epoch if epoch is not None else self._run(run_id).epoch

    def _run(self, run_id: str) -> Run:
        run = self.get_run(run_id)
        if run is None:
            raise StoreError(f"no run {run_id!r} at {self.url}")
        return run

    def close(self) -> None:
        if self._own:
            self._client.close()

    # -- not a worker's business ----------------------------------------------------------------
    def _server_side(self, what: str) -> StoreError:
        return StoreError(f"{what} is done by the jobtail server, not over HttpStore")

    def create_run(self, upload_id: str, service_name: str, run_id: str | None = None) -> Run:
        """A queued run for the key, made by the server (``POST /runs/{upload}/{service}/runs``):
        ``jobtail.run(server, upload_id, service, token=api_key)`` with no ``run_id``. It needs
        an API key; a write token is for one run that already exists."""
        if run_id is not None:
            raise StoreError("the jobtail server names new runs: create_run takes no run_id")
        path = f"{self.url}/runs/{quote(upload_id, safe='')}/{quote(service_name, safe='')}/runs"
        try:
            response = self._client.post(path, headers=self._headers)
        except httpx.TransportError as exc:
            raise StoreError(f"jobtail server at {self.url} unreachable: {exc}") from exc
        body = _json_body(response)
        if response.status_code == 201:
            return _run_from(body)
        if response.status_code == 409 and isinstance(body.get("run_id"), str):
            active = self.get_run(body["run_id"])
            if active is not None:
                raise RunActiveError(active)
        detail = body.get("detail") or response.text or response.reason_phrase
        refused = f"jobtail server refused to create a run ({response.status_code}): {detail}"
        if response.status_code in (401, 403):
            refused += "; creating runs takes an API key (a write token only writes its own run)"
        raise StoreError(refused)

    def list_runs(
        self, upload_id: str | None = None, service_name: str | None = None, limit: int = 100
    ) -> list[Run]:
        raise self._server_side("listing runs")

    def stale_runs(
        self, heartbeat_before: datetime, queued_before: datetime | None = None, limit: int = 1000
    ) -> list[Run]:
        raise self._server_side("the janitor")

    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        raise self._server_side("the janitor")

    def purge(self, finished_before: datetime) -> int:
        raise self._server_side("purging")

    def read(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
    ) -> list[LogLine]:
        raise self._server_side("reading (use jobtail.streams.client.follow)")


def _reason(response: httpx.Response) -> str:
    """The server's JSON ``detail``; for a HEAD (no body) the RFC 6750 error description."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    challenge = str(response.headers.get("www-authenticate", ""))
    marker = 'error_description="'
    if marker in challenge:
        return challenge.split(marker, 1)[1].split('"', 1)[0]
    return response.text or response.reason_phrase


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _run_from(body: dict[str, Any]) -> Run:
    """A run as the runs API shows it (``Run.to_json``)."""

    def when(key: str) -> datetime | None:
        value = body.get(key)
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    return Run(
        run_id=body["run_id"],
        upload_id=body["upload_id"],
        service_name=body["service_name"],
        status=RunStatus(body["status"]),
        created_at=when("created_at") or utcnow(),
        started_at=when("started_at"),
        finished_at=when("finished_at"),
        heartbeat_at=when("heartbeat_at"),
        last_seq=int(body.get("last_seq") or 0),
        error=body.get("error"),
        epoch=int(body.get("epoch") or 0),
        omitted=int(body.get("omitted") or 0),
    )


def _body(lines: Sequence[LogLine]) -> bytes:
    rows: list[dict[str, Any]] = [line.to_json() for line in lines]
    return dump_json(rows).encode()
