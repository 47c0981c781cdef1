"""The HTTP SupabaseStore sends through the real supabase-py client, its retries, and its errors.

The fake PostgREST in ``fake_postgrest`` runs each call on real PostgreSQL, so the bodies here
are also proven to be ones the SQL functions accept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from jobtail.store import from_url
from jobtail.store.base import LogLine, RunFencedError, RunStatus, SeqGapError, StoreError
from jobtail.store.supabase import SupabaseStore
from tests.pg import PgCluster
from tests.store.fake_postgrest import ANON_KEY, SERVICE_KEY, URL, FakePostgrest

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class Sleeps(list[float]):
    """Records the backoff instead of waiting it out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fake(fake_postgrest: FakePostgrest) -> FakePostgrest:
    return fake_postgrest


@pytest.fixture
def store(fake: FakePostgrest, sleeps: Sleeps) -> SupabaseStore:
    return SupabaseStore(fake.client(), sleep=sleeps)


def sent(request: httpx.Request) -> tuple[str, str, dict[str, str], object]:
    """What a request carried: method, path, query parameters and JSON body."""
    params = dict(request.url.params)
    assert len(params) == len(request.url.params.multi_items())
    body = json.loads(request.content) if request.content else None
    return request.method, request.url.path, params, body


@pytest.mark.postgres
def test_requests_follow_the_postgrest_rpc_contract(
    store: SupabaseStore, fake: FakePostgrest
) -> None:
    bound = T0.replace(year=2030)
    store.create_run("u1", "pydantic", run_id="r1")
    store.start_run("r1")
    store.append("r1", [LogLine(1, T0, "WARNING", "héllo\nworld", {"k": [1, "é"]})])
    store.read("r1", after=0, limit=10, min_level="warning", before=5)
    store.get_run("r1")
    store.list_runs("u1", limit=5)
    store.latest_run("u1", "pydantic")
    store.heartbeat("r1", epoch=1)
    store.append("r1", [LogLine(2, T0, "INFO", "b")], epoch=1)
    store.finish_run("r1", RunStatus.SUCCEEDED, lines=[LogLine(3, T0, "INFO", "end")], epoch=1)
    store.stale_runs(bound)
    store.restart_heartbeats("r0", 2)
    store.clock()
    store.purge(bound)
    rpc = "/rest/v1/rpc/"
    line = {
        "seq": 1, "timestamp": "2025-01-02T03:04:05.678901+00:00", "log_level": "WARNING",
        "level_no": 30, "message": "héllo\nworld", "fields": {"k": [1, "é"]},
    }  # fmt: skip
    expected = [
        ("POST", rpc + "jobtail_create_run", {},
         {"p_run_id": "r1", "p_upload_id": "u1", "p_service_name": "pydantic"}),
        ("POST", rpc + "jobtail_claim_run", {}, {"p_run_id": "r1", "p_claim": "<claim>"}),
        ("POST", rpc + "jobtail_append", {}, {"p_run_id": "r1", "p_lines": [line]}),
        ("GET", rpc + "jobtail_read", {"p_run_id": "r1", "p_after": "0", "p_limit": "10",
                                      "p_min_level_no": "30", "p_before": "5"}, None),
        ("GET", rpc + "jobtail_get_run", {"p_run_id": "r1"}, None),
        ("GET", rpc + "jobtail_list_runs", {"p_limit": "5", "p_upload_id": "u1"}, None),
        ("GET", rpc + "jobtail_list_runs",
         {"p_limit": "1", "p_upload_id": "u1", "p_service_name": "pydantic"}, None),
        ("POST", rpc + "jobtail_heartbeat", {}, {"p_run_id": "r1", "p_epoch": 1}),
        ("POST", rpc + "jobtail_append", {},
         {"p_run_id": "r1", "p_lines": [{**line, "seq": 2, "log_level": "INFO", "level_no": 20,
                                          "message": "b", "fields": None}], "p_epoch": 1}),
        ("POST", rpc + "jobtail_finish_run", {},
         {"p_run_id": "r1", "p_status": "succeeded", "p_error": None, "p_epoch": 1,
          "p_lines": [{**line, "seq": 3, "log_level": "INFO", "level_no": 20,
                       "message": "end", "fields": None}]}),
        ("GET", rpc + "jobtail_stale_runs",
         {"p_heartbeat_before": "2030-01-02T03:04:05.678901+00:00", "p_limit": "1000"}, None),
        ("POST", rpc + "jobtail_restart_heartbeats", {}, {"p_after": "r0", "p_limit": 2}),
        ("GET", rpc + "jobtail_clock", {}, None),
        ("POST", rpc + "jobtail_purge", {},
         {"p_finished_before": "2030-01-02T03:04:05.678901+00:00"}),
    ]  # fmt: skip
    got = [sent(request) for request in fake.requests]
    claim = got[1][3]
    assert isinstance(claim, dict)
    assert datetime.fromisoformat(claim["p_claim"]).tzinfo is not None
    claim["p_claim"] = "<claim>"
    assert got == expected
    assert (
        fake.requests[3].url.query
        == b"p_run_id=r1&p_after=0&p_limit=10&p_min_level_no=30&p_before=5"
    )
    for request in fake.requests:
        assert str(request.url).startswith(URL + rpc)
        assert request.headers["apikey"] == SERVICE_KEY
        assert request.headers["authorization"] == f"Bearer {SERVICE_KEY}"
        assert request.headers["accept-profile"] == "public"
        if request.method == "POST":
            assert request.headers["content-type"] == "application/json"
            assert request.headers["content-profile"] == "public"


@pytest.mark.postgres
def test_timeouts_and_5xx_are_retried_with_backoff(
    store: SupabaseStore, fake: FakePostgrest, sleeps: Sleeps
) -> None:
    store.create_run("u1", "pydantic", run_id="r1")
    fake.requests.clear()
    fake.faults.extend(
        [
            httpx.Response(503, text="upstream connect error"),
            httpx.ReadTimeout("timed out"),
            httpx.Response(503, json={"code": "PGRST001", "message": "Database client error"}),
            httpx.ConnectError("connection refused"),
        ]
    )
    assert store.append("r1", [LogLine(1, T0, "INFO", "once")]) == 1
    assert sleeps == [0.1, 0.2, 0.4, 0.8]
    assert len(fake.requests) == 5
    assert len({request.content for request in fake.requests}) == 1  # the same batch, resent
    assert [item.message for item in store.read("r1")] == ["once"]


@pytest.mark.postgres
def test_a_call_whose_reply_was_lost_is_safe_to_send_again(
    store: SupabaseStore, fake: FakePostgrest, sleeps: Sleeps
) -> None:
    fake.lost_replies = 1
    assert store.create_run("u1", "pydantic", run_id="r1").run_id == "r1"  # not RunActiveError
    fake.lost_replies = 1
    assert store.start_run("r1") is True  # the claim is still ours
    fake.lost_replies = 1
    assert store.append("r1", [LogLine(1, T0, "INFO", "a"), LogLine(2, T0, "INFO", "b")]) == 2
    fake.lost_replies = 1
    store.finish_run("r1", RunStatus.SUCCEEDED)
    assert [item.seq for item in store.read("r1")] == [1, 2]
    run = store.get_run("r1")
    assert run is not None and run.status is RunStatus.SUCCEEDED and run.last_seq == 2
    assert sleeps == [0.1] * 4
    assert store.start_run("r1") is False  # a different claim on a finished run


@pytest.mark.postgres
def test_nul_characters_become_replacement_characters(store: SupabaseStore) -> None:
    store.create_run("u1", "pydantic", run_id="r1")
    fields = {"raw": "a\x00b", "nul": "c\x00d", "escaped": "\\u0000 stays text"}
    store.append("r1", [LogLine(1, T0, "INFO", "x\x00y", fields)])
    [got] = store.read("r1")
    assert got.message == "x\ufffdy"
    assert got.fields == {"raw": "a\ufffdb", "nul": "c\ufffdd", "escaped": "\\u0000 stays text"}


@pytest.mark.postgres
def test_retries_are_bounded(fake: FakePostgrest, sleeps: Sleeps) -> None:
    store = SupabaseStore(fake.client(), attempts=8, sleep=sleeps)
    fake.faults.extend(httpx.Response(504, text="gateway timeout") for _ in range(8))
    with pytest.raises(StoreError, match="jobtail_get_run failed after 8 attempts"):
        store.get_run("r1")
    assert len(fake.requests) == 8
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


@pytest.mark.postgres
def test_client_errors_are_not_retried(store: SupabaseStore, fake: FakePostgrest) -> None:
    with pytest.raises(StoreError, match="unknown run"):
        store.append("no-such-run", [LogLine(1, T0, "INFO", "x")])
    assert len(fake.requests) == 1


@pytest.mark.postgres
def test_a_client_key_is_refused(fake: FakePostgrest) -> None:
    store = SupabaseStore(fake.client(ANON_KEY))
    with pytest.raises(StoreError, match="service role key"):
        store.create_run("u1", "pydantic")
    assert [request.headers["apikey"] for request in fake.requests] == [ANON_KEY]


@pytest.fixture
def unmigrated(pg_cluster: PgCluster) -> Iterator[FakePostgrest]:
    name = pg_cluster.create_database()
    fake = FakePostgrest(pg_cluster.url(name))
    yield fake
    fake.close()
    pg_cluster.drop_database(name)


@pytest.mark.postgres
def test_a_project_without_the_schema_names_the_fix(unmigrated: FakePostgrest) -> None:
    store = SupabaseStore(unmigrated.client())
    with pytest.raises(StoreError, match="supabase db push"):
        store.check()


def test_from_env_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreError, match="SUPABASE_URL is not set"):
        SupabaseStore.from_env({"SUPABASE_SERVICE_KEY": "k"})
    with pytest.raises(StoreError, match=r"SUPABASE_SERVICE_KEY \(or SUPABASE_SERVICE_ROLE_KEY\)"):
        SupabaseStore.from_env({"SUPABASE_URL": URL})
    with pytest.raises(StoreError, match="cannot use SUPABASE_URL"):
        SupabaseStore.from_env({"SUPABASE_URL": "not a url", "SUPABASE_SERVICE_KEY": "k"})
    store = SupabaseStore.from_env({"SUPABASE_URL": URL, "SUPABASE_SERVICE_ROLE_KEY": "k"})
    assert str(store.client.supabase_url).startswith(URL)
    store.close()
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    with pytest.raises(StoreError, match="SUPABASE_URL"):
        from_url("supabase")


def test_tails_poll_fast_while_lines_flow_and_back_off_when_idle() -> None:
    store = SupabaseStore.from_env({"SUPABASE_URL": URL, "SUPABASE_SERVICE_KEY": "k"})
    intervals = [store.next_poll_interval(idle) for idle in range(7)]
    assert intervals == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert store.next_poll_interval(10_000) == 2.0
    assert store.next_poll_interval(-1) == 0.1
    store.close()


@pytest.mark.postgres
def test_refusals_come_back_as_the_errors_they_are(
    store: SupabaseStore, fake: FakePostgrest
) -> None:
    """PT403/PT409 from the SQL functions are HTTP 403/409 through PostgREST, and the JSON
    detail rebuilds RunFencedError / SeqGapError: never retried, never a generic error."""
    store.create_run("u1", "pydantic", run_id="r1")
    claimed = store.claim_run("r1")
    assert claimed is not None and claimed.epoch == 1
    with pytest.raises(SeqGapError) as gap:
        store.append("r1", [LogLine(2, T0, "INFO", "gap")], epoch=1)
    assert (gap.value.expected, gap.value.received) == (1, 2)
    fake.requests.clear()
    with pytest.raises(RunFencedError) as stale:
        store.append("r1", [LogLine(1, T0, "INFO", "zombie")], epoch=0)
    assert stale.value.reason == "stale_epoch" and stale.value.epoch == 1
    assert len(fake.requests) == 1  # not retried
    store.finish_run("r1", RunStatus.FAILED, "x", lines=[LogLine(0, T0, "ERROR", "why")])
    with pytest.raises(RunFencedError) as closed:
        store.append("r1", [LogLine(2, T0, "INFO", "late")])
    assert closed.value.reason == "closed" and closed.value.status == "failed"
    assert [(line.seq, line.message) for line in store.read("r1")] == [(1, "why")]
