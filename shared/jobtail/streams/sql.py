"""The stream operations in Python over plain SQL: SQLite's. PostgreSQL and Supabase run the
same steps as SQL functions (``0007_stream_functions.sql``, ``functions.py``); a change here
goes there too, and ``tests/streams/test_store.py`` and the conformance suite run both.

Every write is one transaction that holds the write lock first (SQLite: ``BEGIN IMMEDIATE``),
so appends to a stream, and so per ``(stream, producer)``, are serialized, and the producer's
state, the data, the tail and the closed flag commit together: a retried append is a no-op, a
gap or stale epoch writes nothing, and closing is atomic with the final append. Backends supply
the connection and transaction (``_tx``); the rows and the pure steps over them are ``sql_rows``.

Tables (``streams``, ``streams_chunks``, ``streams_producers``): a stream row per path with its
tail and closed flag; data rows ``[start, stop)`` in units; producer state per stream. A fork
points at its source and fork offset: reads below it are served from the source (recursively),
nothing is copied; a source with forks is soft-deleted (410 Gone) on DELETE or once it expires,
and removed with its last fork. An operation that meets an expired stream stops
(``StreamExpired``); ``expiring`` removes the stream in a write transaction of its own, which
commits whatever the operation then answers, and runs it again. The janitor removes those no
request meets again (``sweep_expired``), in batches of the same transactions.
"""

from __future__ import annotations

import secrets
import time
from abc import abstractmethod
from contextlib import AbstractContextManager

from .base import (
    Appended,
    AppendRequest,
    Chunk,
    Created,
    CreateRequest,
    Expiry,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
    StreamExpired,
    StreamGone,
    StreamInvalid,
    StreamMeta,
    StreamNotFound,
    StreamStore,
    expiring,
    is_json,
    media_type,
    parse_offset,
)
from .sql_rows import COLUMNS, Row, _sliced, producer_key
from .sql_rows import Tx as Tx
from .sql_rows import json_messages as json_messages

EXPIRED_AFTER = (
    "SELECT stream_id FROM streams WHERE stream_id > ? AND deleted = 0"
    " AND ((expires_at IS NOT NULL AND ? >= expires_at)"
    " OR (ttl IS NOT NULL AND ? >= touched_at + ttl))"
    " ORDER BY stream_id LIMIT ?"
)
"""A sweep's candidates: the next expired streams by id (the keyset), not yet soft-deleted."""
DEFAULT_CONTENT_TYPE = "application/octet-stream"
ROWS_PER_READ = 5000


class SqlStreamStore(StreamStore):
    """The operations; subclasses give ``_tx`` (write, holding the write lock) and ``_read_tx``
    (a snapshot)."""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Tx]: ...

    def _read_tx(self) -> AbstractContextManager[Tx]:
        return self._tx()

    # -- rows -------------------------------------------------------------------------------
    def _row(self, tx: Tx, path: str) -> Row | None:
        """The stream at ``path``; an expired one raises ``StreamExpired`` (see ``_expire``)."""
        found = tx.execute(f"SELECT {COLUMNS} FROM streams WHERE path = ?", (path,))
        r = found.fetchone()
        if r is None:
            return None
        row = Row.of(r)
        if not row.deleted and row.expired(time.time()):
            raise StreamExpired(path)
        return row

    def _expire(self, path: str) -> None:
        """Remove the stream at ``path`` if it is still expired, in a transaction of its own:
        one with forks is soft-deleted (410 from then on) and goes with its last fork. The
        write lock makes a concurrent remover of it, or a fork of it, come before or after."""
        with self._tx() as tx:
            found = tx.execute(f"SELECT {COLUMNS} FROM streams WHERE path = ?", (path,))
            r = found.fetchone()
            if r is None:
                return
            row = Row.of(r)
            if row.deleted or not row.expired(time.time()):
                return
            self._remove(tx, row)
        self.listeners.notify(path)

    def _sweep_batch(self, after: str, batch: int) -> tuple[int, int, str | None]:
        """Candidates come from a snapshot, so a sweep that finds nothing never takes the write
        lock; each is read again under it. One already gone counts: an earlier candidate took
        it along (a source with its last fork), or a request met it."""
        with self._read_tx() as tx:
            now = time.time()
            seen = [r[0] for r in tx.execute(EXPIRED_AFTER, (after, now, now, batch)).fetchall()]
        if not seen:
            return 0, 0, None
        removed, paths = 0, []
        with self._tx() as tx:
            now = time.time()
            for stream_id in seen:
                r = tx.execute(f"SELECT {COLUMNS} FROM streams WHERE stream_id = ?", (stream_id,))
                found = r.fetchone()
                row = None if found is None else Row.of(found)
                if row is not None and (row.deleted or not row.expired(now)):
                    continue  # a request met it first (410 now), or slid its TTL
                if row is not None:
                    self._remove(tx, row)
                    paths.append(row.path)
                removed += 1
        for path in paths:
            self.listeners.notify(path)
        return removed, len(seen), seen[-1]

    def _by_id(self, tx: Tx, stream_id: str) -> Row:
        r = tx.execute(f"SELECT {COLUMNS} FROM streams WHERE stream_id = ?", (stream_id,))
        return Row.of(r.fetchone())

    def _open(self, tx: Tx, path: str) -> Row:
        row = self._row(tx, path)
        if row is None:
            raise StreamNotFound(f"no stream at {path!r}")
        if row.deleted:
            raise StreamGone(f"stream {path!r} was deleted")
        return row

    def _remove(self, tx: Tx, row: Row) -> None:
        """Delete a stream; with live forks only mark it deleted. Cascades up a fork chain."""
        if row.forks > 0:
            if not row.deleted:
                tx.execute("UPDATE streams SET deleted = 1 WHERE stream_id = ?", (row.stream_id,))
            return
        for table in ("streams_chunks", "streams_producers", "streams"):
            tx.execute(f"DELETE FROM {table} WHERE stream_id = ?", (row.stream_id,))
        if row.fork_of is not None:
            tx.execute("UPDATE streams SET forks = forks - 1 WHERE stream_id = ?", (row.fork_of,))
            source = self._by_id(tx, row.fork_of)
            if source.forks == 0 and (source.deleted or source.expired(time.time())):
                self._remove(tx, source)

    def _write(self, tx: Tx, row: Row, body: bytes, *, allow_empty: bool) -> int:
        """Store a body at the tail as one row (a JSON batch: its messages, one per line);
        return the new tail."""
        if not body:
            return row.tail
        if is_json(row.content_type):
            messages = json_messages(body, allow_empty=allow_empty)
            if not messages:
                return row.tail
            data, stop = "\n".join(messages).encode(), row.tail + len(messages)
        else:
            data, stop = body, row.tail + len(body)
        tx.execute(
            "INSERT INTO streams_chunks (stream_id, start, stop, data) VALUES (?, ?, ?, ?)",
            (row.stream_id, row.tail, stop, data),
        )
        return stop

    # -- create ---------------------------------------------------------------------------------
    @expiring
    def create(self, path: str, request: CreateRequest) -> Created:
        if request.expiry.ttl is not None and request.expiry.expires_at is not None:
            raise StreamInvalid("send Stream-TTL or Stream-Expires-At, not both")
        return self._create(path, request)

    def _create(self, path: str, request: CreateRequest) -> Created:
        with self._tx() as tx:
            existing = self._row(tx, path)
            if existing is not None:
                return Created(self._confirm(tx, existing, request), created=False)
            row = self._new_row(tx, path, request)
            tail = self._write(tx, row, request.body, allow_empty=True)
            tx.execute(
                f"INSERT INTO streams ({COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (
                    row.stream_id, path, row.content_type, row.ttl, row.expires_at,
                    row.touched_at, tail, int(request.closed), None, None, row.fork_of,
                    row.fork_offset, 0, 0,
                ),
            )  # fmt: skip
            if row.fork_of is not None:
                tx.execute(
                    "UPDATE streams SET forks = forks + 1 WHERE stream_id = ?", (row.fork_of,)
                )
            row.tail, row.closed = tail, request.closed
        self.listeners.notify(path)
        return Created(row.meta(), created=True)

    def _new_row(self, tx: Tx, path: str, request: CreateRequest) -> Row:
        expiry = request.expiry
        expires_at = expiry.expires_at.timestamp() if expiry.expires_at else None
        row = Row(
            secrets.token_hex(8), path, request.content_type or DEFAULT_CONTENT_TYPE,
            expiry.ttl, expires_at, time.time(), 0, False, None, None, None, None, 0, False,
        )  # fmt: skip
        if request.fork_from is not None:
            self._fork_onto(tx, row, request)
        return row

    def _fork_onto(self, tx: Tx, row: Row, request: CreateRequest) -> None:
        """Point a new row at its source: content type, fork offset and expiry per §4.2."""
        source = self._row(tx, request.fork_from or "")
        if source is None:
            raise StreamNotFound(f"fork source {request.fork_from!r} does not exist")
        if source.deleted:
            raise StreamConflict(f"fork source {request.fork_from!r} was deleted")
        if request.content_type and media_type(request.content_type) != media_type(
            source.content_type
        ):
            raise StreamConflict("a fork's content type must match its source's")
        row.content_type = source.content_type
        anchor = source.tail if request.fork_offset is None else parse_offset(request.fork_offset)
        if anchor > source.tail:
            raise StreamInvalid("Stream-Fork-Offset is beyond the source stream's tail")
        offset = anchor + self._sub_offset(tx, source, anchor, request.fork_sub_offset)
        row.fork_of, row.fork_offset, row.tail = source.stream_id, offset, offset
        if request.expiry == Expiry():  # inherit the source's TTL or deadline
            row.ttl, row.expires_at = source.ttl, source.expires_at

    def _sub_offset(self, tx: Tx, source: Row, anchor: int, sub: int) -> int:
        """Units past the anchor, at most to the end of the data unit that starts there."""
        if sub == 0:
            return 0
        if sub < 0:
            raise StreamInvalid("Stream-Fork-Sub-Offset must be a non-negative integer")
        pieces = self._pieces(tx, source, anchor, source.tail, 1, limit=1)
        if not pieces or anchor + sub > pieces[0][1]:
            raise StreamInvalid("Stream-Fork-Sub-Offset is past the next data boundary")
        return sub

    def _confirm(self, tx: Tx, row: Row, request: CreateRequest) -> StreamMeta:
        """PUT on an existing path: 200 with the same configuration, else 409."""
        if row.deleted:
            raise StreamConflict(f"stream {row.path!r} was deleted; its path cannot be reused")
        try:
            wanted = self._new_row(tx, row.path, request)
        except StreamNotFound as exc:
            raise StreamConflict(str(exc)) from exc
        same = (
            media_type(wanted.content_type) == media_type(row.content_type)
            and wanted.ttl == row.ttl
            and wanted.expires_at == row.expires_at
            and request.closed == row.closed
            and wanted.fork_of == row.fork_of
            and (row.fork_of is None or wanted.fork_offset == row.fork_offset)
        )
        if not same:
            raise StreamConflict(f"stream {row.path!r} exists with another configuration")
        return row.meta()

    # -- append / close ---------------------------------------------------------------------------
    @expiring
    def append(self, path: str, request: AppendRequest) -> Appended:
        if not request.body and not request.close:
            raise StreamInvalid("empty body: send data, or Stream-Closed: true to close")
        with self._tx() as tx:
            row = self._open(tx, path)
            result = self._append(tx, row, request)
        if not result.duplicate:
            self.listeners.notify(path)
        return result

    def _append(self, tx: Tx, row: Row, request: AppendRequest) -> Appended:
        producer = request.producer
        if row.closed:
            if producer is not None and row.closed_by == producer_key(producer):
                return Appended(row.meta(), duplicate=True, producer=producer)
            if request.close and not request.body:
                return Appended(row.meta(), duplicate=True, producer=producer)
            raise StreamClosedError(row.meta().next_offset)
        wrong_type = request.content_type and media_type(request.content_type) != media_type(
            row.content_type
        )
        if request.body and wrong_type:
            raise StreamConflict(
                f"content type {request.content_type!r} does not match the stream's"
                f" {row.content_type!r}"
            )
        if producer is not None:
            duplicate = self._check_producer(tx, row, producer)
            if duplicate is not None:
                return Appended(row.meta(), duplicate=True, producer=duplicate)
        if request.stream_seq is not None:
            if row.stream_seq is not None and request.stream_seq <= row.stream_seq:
                raise StreamConflict(
                    f"Stream-Seq {request.stream_seq!r} is not above the last {row.stream_seq!r}"
                )
            row.stream_seq = request.stream_seq
        row.tail = self._write(tx, row, request.body, allow_empty=False)
        row.closed = request.close
        row.closed_by = producer_key(producer) if request.close else None
        tx.execute(
            "UPDATE streams SET tail = ?, closed = ?, closed_by = ?, stream_seq = ?,"
            " touched_at = ? WHERE stream_id = ?",
            (row.tail, int(row.closed), row.closed_by, row.stream_seq, time.time(), row.stream_id),
        )
        if producer is not None:
            tx.execute(
                "DELETE FROM streams_producers WHERE stream_id = ? AND producer_id = ?",
                (row.stream_id, producer.id),
            )
            tx.execute(
                "INSERT INTO streams_producers (stream_id, producer_id, epoch, seq)"
                " VALUES (?, ?, ?, ?)",
                (row.stream_id, producer.id, producer.epoch, producer.seq),
            )
        return Appended(row.meta(), producer=producer)

    def _check_producer(self, tx: Tx, row: Row, producer: Producer) -> Producer | None:
        """Kafka-style validation (§5.2.1); returns the stored state for a duplicate."""
        state = tx.execute(
            "SELECT epoch, seq FROM streams_producers WHERE stream_id = ? AND producer_id = ?",
            (row.stream_id, producer.id),
        ).fetchone()
        if state is None:
            if producer.seq != 0:
                raise SequenceGapError(0, producer.seq)
            return None
        epoch, seq = int(state[0]), int(state[1])
        if producer.epoch < epoch:
            raise StaleEpochError(epoch)
        if producer.epoch > epoch:
            if producer.seq != 0:
                raise StreamInvalid("a new producer epoch must start at Producer-Seq 0")
            return None
        if producer.seq <= seq:
            return Producer(producer.id, epoch, seq)
        if producer.seq > seq + 1:
            raise SequenceGapError(seq + 1, producer.seq)
        return None

    # -- delete / head ----------------------------------------------------------------------------
    @expiring
    def delete(self, path: str) -> None:
        with self._tx() as tx:
            row = self._open(tx, path)
            self._remove(tx, row)
        self.listeners.notify(path)

    @expiring
    def head(self, path: str) -> StreamMeta:
        with self._read_tx() as tx:
            return self._open(tx, path).meta()

    # -- read -------------------------------------------------------------------------------------
    @expiring
    def read(self, path: str, offset: str | None) -> Chunk:
        units = None if offset is None else parse_offset(offset)
        with self._read_tx() as tx:
            row = self._open(tx, path)
            start = row.tail if units is None else units
            if start > row.tail:
                raise StreamInvalid("offset is beyond the stream's tail")
            pieces = self._pieces(tx, row, start, row.tail, self.max_read_bytes)
        if row.ttl is not None:
            self._touch(row)
        stop = pieces[-1][1] if pieces else start
        if is_json(row.content_type):
            texts = tuple(m.decode() for p in pieces for m in p[2].split(b"\n"))
            return Chunk(row.meta(), start, stop, messages=texts)
        return Chunk(row.meta(), start, stop, data=b"".join(bytes(p[2]) for p in pieces))

    def _touch(self, row: Row) -> None:
        with self._tx() as tx:
            tx.execute(
                "UPDATE streams SET touched_at = ? WHERE stream_id = ?",
                (time.time(), row.stream_id),
            )

    def _pieces(
        self, tx: Tx, row: Row, start: int, end: int, budget: int, limit: int = ROWS_PER_READ
    ) -> list[tuple[int, int, bytes]]:
        """Data in ``[start, end)`` up to about ``budget`` bytes, stitched across forks."""
        pieces: list[tuple[int, int, bytes]] = []
        if row.fork_of is not None and row.fork_offset is not None and start < row.fork_offset:
            source = self._by_id(tx, row.fork_of)
            pieces = self._pieces(tx, source, start, min(end, row.fork_offset), budget, limit)
            if pieces and pieces[-1][1] < min(end, row.fork_offset):
                return pieces  # the budget ran out inside the source's range
            start = row.fork_offset
        used = sum(len(p[2]) for p in pieces)
        if start >= end or (pieces and used >= budget):
            return pieces
        found = tx.execute(
            "SELECT start, stop, data FROM streams_chunks WHERE stream_id = ? AND stop > ?"
            " AND start < ? ORDER BY start LIMIT ?",
            (row.stream_id, start, end, limit),
        ).fetchall()
        for r_start, r_stop, data in _sliced(found, start, end, is_json(row.content_type)):
            pieces.append((r_start, r_stop, data))
            used += len(data)
            if used >= budget:
                break
        return pieces
