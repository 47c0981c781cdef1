"""``Streams``, what the HTTP routes call: one path space for generic streams and run logs, the
long-poll wait (woken by this process's writes, polling for other processes'), and the
cache-busting cursor (§10.1). Real SQLite stores, no server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from jobtail.store import LogLine, RunStatus
from jobtail.store.base import utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import (
    AppendRequest,
    Chunk,
    CreateRequest,
    Producer,
    StreamNotFound,
    StreamUnsupported,
    format_offset,
)
from jobtail.streams.service import CURSOR_EPOCH, CURSOR_INTERVAL, Streams, next_cursor
from jobtail.streams.sqlite import SQLiteStreams
from tests.waiting import wait_for_async

PLAIN = "text/plain"
RUN_OWNED = "a run's stream is created and deleted with its run"
NO_GENERIC = "this store keeps no generic streams (only runs/...)"
NOW = CURSOR_EPOCH + 100 * CURSOR_INTERVAL + 5


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


@pytest.fixture
def service(store: SQLiteStore) -> Iterator[Streams]:
    opened = Streams.over(store, SQLiteStreams.from_store(store), long_poll_seconds=3)
    yield opened
    opened.close()


def test_the_cursor_counts_twenty_second_intervals_since_its_epoch() -> None:
    assert next_cursor(None, NOW) == "100"
    assert next_cursor(None, CURSOR_EPOCH + 100 * CURSOR_INTERVAL) == "100"
    assert next_cursor(None, CURSOR_EPOCH + 101 * CURSOR_INTERVAL - 0.01) == "100"
    for behind_or_not_ours in ("99", "0", "abc", "-5", "", "1e9"):
        assert next_cursor(behind_or_not_ours, NOW) == "100"
    before = int((time.time() - CURSOR_EPOCH) // CURSOR_INTERVAL)
    assert before <= int(next_cursor(None)) <= before + 1


def test_an_echoed_current_cursor_jumps_ahead_by_1_to_180_intervals() -> None:
    for echoed in (100, 250):
        seen = {int(next_cursor(str(echoed), NOW)) - echoed for _ in range(5000)}
        assert min(seen) == 1 and max(seen) == 180


def test_run_paths_are_read_only_and_generic_ones_need_a_stream_store(
    store: SQLiteStore, service: Streams
) -> None:
    run = store.create_run("up", "svc")

    async def main() -> None:
        for call in (
            service.create(f"runs/{run.run_id}", CreateRequest(PLAIN)),
            service.delete(f"runs/{run.run_id}"),
        ):
            with pytest.raises(StreamUnsupported, match=f"^{re.escape(RUN_OWNED)}$"):
                await call
        runs_only = Streams.over(store, None)
        for call in (
            runs_only.create("s", CreateRequest(PLAIN)),
            runs_only.append("s", AppendRequest(b"x")),
            runs_only.head("s"),
            runs_only.read("s", "-1"),
            runs_only.delete("s"),
        ):
            with pytest.raises(StreamUnsupported, match=f"^{re.escape(NO_GENERIC)}$"):
                await call
        assert (await runs_only.head(f"runs/{run.run_id}")).stream_id == run.run_id
        runs_only.close()  # nothing to close

    anyio.run(main)


def test_paths_route_to_generic_streams_or_to_runs(store: SQLiteStore, service: Streams) -> None:
    run = store.create_run("up", "svc")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None
    line = LogLine(1, utcnow(), "INFO", "hello", None)
    body = b'[{"seq": 1, "log_level": "INFO", "message": "hello"}]'

    async def main() -> None:
        assert (await service.create("s", CreateRequest(PLAIN, body=b"ab"))).created
        assert (await service.append("s", AppendRequest(b"c", PLAIN))).meta.tail == 3
        assert (await service.head("s")).tail == 3
        assert (await service.read("s", "-1")).data == b"abc"
        await service.delete("s")
        with pytest.raises(StreamNotFound):
            await service.head("s")
        path = f"runs/{run.run_id}"
        producer = Producer("w", claimed.epoch, 0)
        appended = await service.append(path, AppendRequest(body, producer=producer))
        assert appended.meta.tail == 1
        beat = await service.append(path, AppendRequest(producer=producer), heartbeat=True)
        assert beat.duplicate
        assert (await service.read(path, "-1")).messages[0].startswith('{"seq":1,')
        assert (await service.head("runs/up/svc")).stream_id == run.run_id
        assert await service.run_id("runs/up/svc") == run.run_id
        assert await service.run_id(path) == run.run_id

    anyio.run(main)
    assert store.read(run.run_id)[0].message == line.message


async def started(service: Streams, path: str, offset: str | None, into: list[Chunk]) -> None:
    into.append(await service.wait_read(path, offset, 10))


def count_reads(service: Streams) -> list[Chunk]:
    """The chunks ``wait_read`` has read so far: a write after the first is one it waits for."""
    reads: list[Chunk] = []
    read = service.read

    async def counted(path: str, offset: str | None) -> Chunk:
        chunk = await read(path, offset)
        reads.append(chunk)
        return chunk

    service.read = counted  # type: ignore[method-assign]
    return reads


@pytest.mark.anyio
async def test_a_waiting_read_wakes_on_this_processs_append(service: Streams) -> None:
    await service.create("s", CreateRequest(PLAIN, body=b"old"))
    assert service.streams is not None
    service.streams.poll_interval = 60  # a wake-up, not a poll, must answer
    got: list[Chunk] = []
    reads = count_reads(service)
    began = time.monotonic()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(started, service, "s", None, got)
        await wait_for_async(lambda: reads)
        await service.append("s", AppendRequest(b"new", PLAIN))
    assert got[0].data == b"new" and got[0].start == 3  # offset=now: from the tail it saw
    assert time.monotonic() - began < 5
    assert not service.streams.listeners._listeners  # the waiter stopped listening


@pytest.mark.anyio
async def test_a_waiting_read_polls_for_another_processs_append(
    store: SQLiteStore, service: Streams
) -> None:
    await service.create("s", CreateRequest(PLAIN))
    assert service.streams is not None
    service.streams.poll_interval = 0.05
    store.poll_interval = 60
    other = SQLiteStreams(store.path)  # another process's store: its writes wake no one here
    got: list[Chunk] = []
    reads = count_reads(service)
    began = time.monotonic()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(started, service, "s", "-1", got)
        await wait_for_async(lambda: reads)
        await anyio.to_thread.run_sync(other.append, "s", AppendRequest(b"x", PLAIN))
    other.close()
    assert got[0].data == b"x"
    assert time.monotonic() - began < 5


@pytest.mark.anyio
async def test_an_idle_waiting_read_asks_its_store_how_long_to_wait_after_each_empty_poll(
    store: SQLiteStore, service: Streams
) -> None:
    """Each poll that found nothing counts: a store that backs off (Supabase: every poll is an
    HTTP request) waits longer each time, for generic streams and for runs alike."""
    await service.create("s", CreateRequest(PLAIN, body=b"a"))
    run = store.create_run("up", "svc")
    assert service.streams is not None
    for owner, path, offset in (
        (service.streams, "s", format_offset(1)),
        (store, f"runs/{run.run_id}", format_offset(0)),
    ):
        asked: list[int] = []

        def backoff(idle_polls: int, asked: list[int] = asked) -> float:
            asked.append(idle_polls)
            return 0.01

        owner.next_poll_interval = backoff  # type: ignore[method-assign]
        chunk = await service.wait_read(path, offset, 0.3)
        assert chunk.empty
        assert len(asked) >= 3 and asked == list(range(len(asked))), path


@pytest.mark.anyio
async def test_a_waiting_read_ends_empty_at_its_timeout_or_at_once_when_closed(
    service: Streams,
) -> None:
    await service.create("open", CreateRequest(PLAIN, body=b"a"))
    await service.create("shut", CreateRequest(PLAIN, body=b"a", closed=True))
    began = time.monotonic()
    chunk = await service.wait_read("open", format_offset(1), 0.3)
    waited = time.monotonic() - began
    assert chunk.empty and not chunk.meta.closed and 0.3 <= waited < 3
    began = time.monotonic()
    chunk = await service.wait_read("shut", format_offset(1), 10)
    assert chunk.empty and chunk.closed and time.monotonic() - began < 3
    chunk = await service.wait_read("open", "-1", 10)  # data now: no wait
    assert chunk.data == b"a"
    chunk = await service.wait_read("shut", "-1", 10)  # the data, not the closed tail
    assert chunk.data == b"a" and chunk.closed


@pytest.mark.anyio
async def test_a_waiting_read_sleeps_through_other_streams_writes(service: Streams) -> None:
    await service.create("s", CreateRequest(PLAIN))
    await service.create("other", CreateRequest(PLAIN))
    assert service.streams is not None
    service.streams.poll_interval = 60  # only a wake-up could read again before the timeout
    got: list[Chunk] = []
    reads = count_reads(service)

    async def wait() -> None:
        got.append(await service.wait_read("s", "-1", 2))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        await wait_for_async(lambda: reads)
        await service.append("other", AppendRequest(b"x", PLAIN))
    assert got[0].empty
    assert len(reads) == 2  # the first read and the one at the timeout: no wake-up for "other"


@pytest.mark.anyio
async def test_a_waiting_read_of_a_run_wakes_on_its_lines(
    store: SQLiteStore, service: Streams
) -> None:
    run = store.create_run("up", "svc")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None
    store.poll_interval = 60  # a wake-up, not a poll, must answer
    for path in (f"runs/{run.run_id}", "runs/up/svc"):
        got: list[Chunk] = []
        reads = count_reads(service)
        written = claimed.last_seq
        began = time.monotonic()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(started, service, path, None, got)
            await wait_for_async(lambda reads=reads: reads)  # type: ignore[misc]
            line = LogLine(written + 1, utcnow(), "INFO", "live", None)
            store.append(run.run_id, [line], epoch=claimed.epoch)
        assert len(got[0].messages) == 1 and '"message":"live"' in got[0].messages[0]
        assert time.monotonic() - began < 5, path
        claimed = store.get_run(run.run_id) or claimed
    store.finish_run(run.run_id, RunStatus.SUCCEEDED, epoch=claimed.epoch)
    chunk = await service.wait_read(f"runs/{run.run_id}", None, 10)
    assert chunk.empty and chunk.closed


@pytest.mark.anyio
async def test_a_run_only_service_waits_on_its_own_listeners(store: SQLiteStore) -> None:
    service = Streams.over(store, None)
    run = store.create_run("up", "svc")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None
    store.poll_interval = 60
    got: list[Chunk] = []
    reads = count_reads(service)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(started, service, f"runs/{run.run_id}", None, got)
        await wait_for_async(lambda: reads)
        store.append(run.run_id, [LogLine(1, utcnow(), "INFO", "x", None)], epoch=claimed.epoch)
    assert len(got[0].messages) == 1


@pytest.mark.anyio
async def test_a_waiting_read_of_a_run_polls_at_the_log_stores_pace(
    store: SQLiteStore, service: Streams
) -> None:
    run = store.create_run("up", "svc")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None and service.streams is not None
    store.poll_interval = 0.05
    service.streams.poll_interval = 60
    other = SQLiteStore(store.path)  # another process's writer: it wakes no one here
    got: list[Chunk] = []
    reads = count_reads(service)
    began = time.monotonic()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(started, service, f"runs/{run.run_id}", None, got)
        await wait_for_async(lambda: reads)
        line = LogLine(1, utcnow(), "INFO", "elsewhere", None)
        await anyio.to_thread.run_sync(lambda: other.append(run.run_id, [line], epoch=1))
    other.close()
    assert len(got[0].messages) == 1 and time.monotonic() - began < 5


def test_a_heartbeat_reaches_the_run_and_a_bare_post_does_not(
    store: SQLiteStore, service: Streams
) -> None:
    run = store.create_run("up", "svc")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None
    path, producer = f"runs/{run.run_id}", Producer("w", claimed.epoch, 0)

    def beat_at() -> object:
        current = store.get_run(run.run_id)
        assert current is not None
        return current.heartbeat_at

    async def main() -> None:
        before = beat_at()
        assert (await service.append(path, AppendRequest(producer=producer))).duplicate
        assert beat_at() == before
        await service.append(path, AppendRequest(producer=producer), heartbeat=True)
        assert beat_at() != before

    anyio.run(main)


def test_long_polls_wait_20_seconds_and_sse_windows_last_60_unless_told(
    store: SQLiteStore,
) -> None:
    default = Streams.over(store, None)
    assert (default.long_poll_seconds, default.sse_seconds) == (20.0, 60.0)
    told = Streams.over(store, None, long_poll_seconds=3, sse_seconds=7)
    assert (told.long_poll_seconds, told.sse_seconds) == (3, 7)
    assert told.runs.store is store and told.streams is None
