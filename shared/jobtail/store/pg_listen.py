"""LISTEN for the store's NOTIFYs on a dedicated session connection, in a daemon thread.

A pool connection cannot LISTEN (it goes back to the pool), so one session connection waits on
its socket with ``select`` and hands each run id to the store's listeners; when the server goes
away it reconnects with backoff while tails fall back to polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from .base import StoreError

CHANNEL = "jobtail"
NOTIFY_WINDOW = 0.005
"""Seconds within which the SQL functions send a run no second NOTIFY for an append
(``jobtail.notify_window_ms``, migration 0006); tails poll that long after each wake-up."""
log = logging.getLogger(__name__)


FIRST_DELAY, MAX_DELAY = 0.05, 2.0
"""Seconds between reconnection attempts: doubling from the first to the most."""
HELD = 5.0
"""A connection that stayed up this long was a success: the next loss starts the backoff over.
(One that dies at once, a server refusing sessions say, keeps backing off: no busy loop.)"""


def reconnect_delay(delay: float, held_for: float) -> tuple[float, float]:
    """(seconds to wait now, the delay after that) for a LISTEN connection that held so long."""
    if held_for >= HELD:
        delay = FIRST_DELAY
    return delay, min(delay * 2, MAX_DELAY)


class Listener:
    """LISTEN on a session connection in a daemon thread; reconnect with backoff when it drops.

    The thread owns its wake-up pipe and closes it when it ends, so ``stop`` never closes a
    descriptor the thread may still be selecting on (a number the process could reuse).
    """

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
        self._pipe_lock = threading.Lock()
        self._pipe_open = True
        self._thread = threading.Thread(
            target=self._run, args=(first,), name="jobtail-listen", daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        with self._pipe_lock:
            if self._pipe_open:
                os.write(self._wake_w, b"x")
        self._thread.join(timeout)

    def _run(self, conn: psycopg.Connection[Any] | None) -> None:
        delay, lost = FIRST_DELAY, 0
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    conn = conn or self._connect()
                    conn.add_notify_handler(self._on_notify)
                    conn.execute(f"listen {CHANNEL}")
                    self.connects += 1
                    if lost:
                        log.warning("jobtail LISTEN connection back after %d tries", lost)
                    lost = 0
                    self._wait(conn)
                except (StoreError, psycopg.Error, OSError) as exc:
                    lost += 1
                    if lost == 1:  # once per outage; tails poll meanwhile
                        log.warning("jobtail LISTEN connection lost, reconnecting: %s", exc)
                except Exception:  # never let the thread die: tails would only poll from now on
                    lost += 1
                    log.exception("jobtail LISTEN thread failed; reconnecting")
                finally:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None
                wait, delay = reconnect_delay(delay, time.monotonic() - started)
                self._stopping.wait(wait)
        finally:
            with self._pipe_lock:
                self._pipe_open = False
                os.close(self._wake_r)
                os.close(self._wake_w)

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
