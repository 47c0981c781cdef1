"""``streams.base.expiring``, the retry around every stream operation, on real SQLite files:
an operation that meets two expired streams (its own path, then its fork's source) removes both
and answers as for the second's state; a path that keeps expiring reads as absent after four
attempts; the operations it wraps keep their keyword arguments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobtail.streams.base import (
    AppendRequest,
    CreateRequest,
    Expiry,
    StreamConflict,
    StreamGone,
    StreamNotFound,
)
from jobtail.streams.sqlite import SQLiteStreams


class Unremovable(SQLiteStreams):
    """A real SQLite store whose removals of expired streams never take (as if another writer
    brought the stream back each time), counted."""

    removals = 0

    def _expire(self, path: str) -> None:
        self.removals += 1


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[SQLiteStreams]:
    opened = SQLiteStreams(tmp_path / "s.db")
    yield opened
    opened.close()


def expire(streams: SQLiteStreams, path: str) -> None:
    """Move the stream's last touch to 1970: its sliding TTL ran out (no sleeping for it)."""
    with streams._tx() as tx:
        tx.execute("UPDATE streams SET touched_at = 0 WHERE path = ?", (path,))


def paths(streams: SQLiteStreams) -> list[str]:
    with streams._tx() as tx:
        return [r[0] for r in tx.execute("SELECT path FROM streams ORDER BY path").fetchall()]


def test_a_fork_over_an_expired_path_from_an_expired_source_removes_both(
    streams: SQLiteStreams,
) -> None:
    """Three attempts: the fork's own expired path goes, then its expired source (soft-deleted:
    another fork reads it), then the answer is that of a deleted source (409), not a 404."""
    brief = Expiry(ttl=3600)
    streams.create("old", CreateRequest("text/plain", brief, body=b"kept"))
    streams.create("young", CreateRequest(expiry=brief, fork_from="old"))
    streams.create("twig", CreateRequest("text/plain", brief, body=b"stale"))
    expire(streams, "twig")
    expire(streams, "old")
    with pytest.raises(StreamConflict, match="fork source 'old' was deleted"):
        streams.create("twig", CreateRequest(expiry=brief, fork_from="old"))
    assert paths(streams) == ["old", "young"]  # twig removed, old kept (soft-deleted) for young
    with pytest.raises(StreamGone):
        streams.head("old")
    assert streams.read("young", "-1").data == b"kept"


def test_a_path_that_keeps_expiring_reads_as_absent_after_four_attempts(tmp_path: Path) -> None:
    streams = Unremovable(tmp_path / "s.db")
    streams.create("brief", CreateRequest("text/plain", Expiry(ttl=3600), body=b"x"))
    expire(streams, "brief")
    with pytest.raises(StreamNotFound, match=r"^the stream expired$"):
        streams.head("brief")
    assert streams.removals == 4
    streams.close()


def test_the_operations_keep_their_keyword_arguments(streams: SQLiteStreams) -> None:
    streams.create(path="k", request=CreateRequest("text/plain", body=b"a"))
    streams.append(path="k", request=AppendRequest(b"b", "text/plain"))
    assert streams.read(path="k", offset="-1").data == b"ab"
    assert streams.head(path="k").tail == 2
    streams.delete(path="k")
    with pytest.raises(StreamNotFound):
        streams.head("k")


class CountedSweeps(SQLiteStreams):
    """A real SQLite store whose sweep transactions are counted."""

    batches = 0

    def _sweep_batch(self, after: str, batch: int) -> tuple[int, int, str | None]:
        self.batches += 1
        return super()._sweep_batch(after, batch)


def test_a_sweep_stops_at_its_first_short_batch_and_takes_batches_of_one(tmp_path: Path) -> None:
    """``sweep_expired`` (beside ``expiring``: the removal no request triggers): 5 expired
    streams in batches of 3 are 2 transactions, not a third that finds nothing; a batch of 1 is
    allowed, 0 is not."""
    streams = CountedSweeps(tmp_path / "s.db")
    for n in range(8):
        streams.create(f"s{n}", CreateRequest("text/plain", Expiry(ttl=3600)))
    for n in range(5):
        expire(streams, f"s{n}")
    assert streams.sweep_expired(batch=3) == 5 and streams.batches == 2
    for n in range(5, 7):
        expire(streams, f"s{n}")
    assert streams.sweep_expired(batch=1) == 2 and paths(streams) == ["s7"]
    with pytest.raises(ValueError, match=r"^batch must be at least 1$"):
        streams.sweep_expired(batch=0)
    streams.close()
