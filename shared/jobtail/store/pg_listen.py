"""LISTEN for the store's NOTIFYs on a dedicated session connection, in a daemon thread.

A pool connection cannot LISTEN (it goes back to the pool), so one session connection waits on
its socket with ``select`` and hands each run id to the store's listeners; when the server goes
away it reconnects with backoff while tails fall back to polling.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from .base import StoreError

CHANNEL = "jobtail"
NOTIFY_WINDOW = 0.005
"""Seconds within which the SQL functions send a run no second NOTIFY for an append
(``jobtail.notify_window_ms``, migration 0006); tails poll that long after each wake-up."""
log = logging.getLogger(__name__)


class Listener:
    """LISTEN on a session connection in a daemon thread; reconnect with backoff when it drops."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        notify: Callable[[str], None],
        first: psycopg.Connection[Any],
    ) -> None:
        self.connects = 0
        self._connect = connect
        self._notify = notify
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._run, args=(first,), name="jobtail-listen", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self, conn: psycopg.Connection[Any] | None) -> None:
        delay = 0.05
        while not self._stopping.is_set():
            try:
                conn = conn or self._connect()
                conn.add_notify_handler(self._on_notify)
                conn.execute(f"listen {CHANNEL}")
                self.connects += 1
                delay = 0.05
                self._wait(conn)
            except (StoreError, psycopg.Error, OSError) as exc:
                log.warning("jobtail LISTEN connection lost, retrying in %.2fs: %s", delay, exc)
            finally:
                if conn is not None:
                    conn.close()
                conn = None
            self._stopping.wait(delay)
            delay = min(delay * 2, 2.0)

    def _wait(self, conn: psycopg.Connection[Any]) -> None:
        """Dispatch notifications until stopped; raise when the connection dies."""
        pgconn = conn.pgconn
        while not self._stopping.is_set():
            ready, _, _ = select.select([pgconn.socket, self._wake_r], [], [], 30.0)
            if self._wake_r in ready:
                return
            if not ready:
                conn.execute("")  # idle: make sure the server is still there
                continue
            pgconn.consume_input()
            while (notice := pgconn.notifies()) is not None:
                if pgconn.notify_handler is not None:
                    pgconn.notify_handler(notice)

    def _on_notify(self, notice: psycopg.Notify) -> None:
        if notice.channel == CHANNEL:
            try:
                self._notify(notice.payload)
            except Exception:
                log.exception("jobtail listener failed on %s", notice.payload)
