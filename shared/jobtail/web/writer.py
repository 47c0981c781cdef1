"""A response's ``send`` that the tail's follower can write through while the viewer's task sleeps.

The follower writes a batch to every caught-up viewer in one loop (``fanout.Reader``): for each,
it starts the ASGI ``send`` coroutine and runs it by hand. It normally completes at once (the
server writes to the socket); if it suspends (the socket's buffer is full and the server waits
for it to drain), the rest runs in a task, and the writer is not ``ready`` until that task is
done, so the viewer goes back to reading through its own task, whose next send waits for it:
bytes go out in the order they were published, however they were sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from starlette.types import Send


class Writer:
    """The follower's way into one response (``fanout.Sink``), open between ``attach`` (its
    body starts) and ``detach`` (its body is over)."""

    __slots__ = ("_error", "_pending", "_send")

    def __init__(self) -> None:
        self._send: Send | None = None
        self._pending: asyncio.Task[None] | None = None
        self._error: Exception | None = None

    @property
    def ready(self) -> bool:
        return self._send is not None and self._pending is None

    def attach(self, send: Send) -> None:
        self._send = send

    def detach(self) -> None:
        """The body is over: no more writes; one still in flight is abandoned."""
        self._send = None
        if self._pending is not None:
            self._pending.cancel()

    def write(self, data: bytes) -> None:
        assert self._send is not None, "write only while ready"
        message = {"type": "http.response.body", "body": data, "more_body": True}
        steps = self._send(message).__await__()
        try:
            waiting = steps.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the response's own task raises it, at its next send
            self._error, self._send = exc, None
            return
        self._pending = asyncio.get_running_loop().create_task(_finish(steps, waiting))
        self._pending.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        if self._pending is task:
            self._pending = None
        if not task.cancelled() and isinstance(exc := task.exception(), Exception):
            self._error, self._send = exc, None

    async def settle(self) -> None:
        """Before the response's own send: the follower's writes are out (or their error
        raised here)."""
        if self._pending is not None:
            await asyncio.wait([self._pending])
        if self._error is not None:
            raise self._error


async def _finish(steps: Generator[Any, Any, None], waiting: Any) -> None:
    await _Resumed(steps, waiting)


class _Resumed:
    """Awaiting this runs the rest of an awaitable's ``steps``, started by hand and suspended
    on ``waiting`` (what they yielded): the task running it sees that future as its own."""

    __slots__ = ("steps", "waiting")

    def __init__(self, steps: Generator[Any, Any, None], waiting: Any) -> None:
        self.steps, self.waiting = steps, waiting

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self.steps, self.waiting
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # a cancellation: into the coroutine it goes
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return
