"""Streams handed off past the request's chain: once a stream's headers are out, its body runs
under the outermost layer with the server's own ``receive`` and ``send``, and the chain that
built it (every middleware frame inside, the router, FastAPI's dependency exit stacks and solved
values) unwinds at once.

A live viewer otherwise holds that whole chain for as long as it watches: tracemalloc put it at
a third of the server's memory per viewer (``python -m bench --only fanout``), and every line the
follower wrote to a caught-up viewer went through each middleware's ``send`` wrapper first. The
layers inside see the response start and then the app returning, as for a response whose body
the server goes on sending. That is right only where every layer inside passes a stream's body
through untouched, so the layer is opt-in: ``create_app`` installs it outermost (its own
middleware, Starlette's and FastAPI's pass bodies through); a host app may add it last
(``app.add_middleware(HandoffMiddleware)``) unless a middleware of its own must see or change
stream bodies (a body logger, a compressor that does not skip ``text/event-stream``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

KEY = "jobtail.handoff"
"""The scope key a response finds its ``Handoff`` under (absent: no layer, the ordinary path)."""

Rest = Callable[[Receive, Send], Awaitable[None]]


class Handoff:
    """One request's way past its chain: the server's ``receive`` and ``send``, and the rest of
    the response once it is taken (``take``), with what to do if that rest never runs."""

    __slots__ = ("_abandon", "_rest", "receive", "send")

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive, self.send = receive, send
        self._rest: Rest | None = None
        self._abandon: Callable[[], None] | None = None

    def take(self, rest: Rest, abandon: Callable[[], None]) -> None:
        """The response goes on in ``rest`` once the app has returned; ``abandon`` runs
        instead if the chain fails on its way out (the rest then never starts)."""
        assert self._rest is None, "a response is handed off once"
        self._rest, self._abandon = rest, abandon

    async def finish(self) -> None:
        if self._rest is not None:
            await self._rest(self.receive, self.send)

    def abandon(self) -> None:
        if self._abandon is not None:
            self._abandon()


class HandoffMiddleware:
    """Offers each HTTP request a ``Handoff`` (``scope[KEY]``) and runs what is handed off."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handoff = Handoff(receive, send)
        try:  # a copy: what the chain adds to its scope goes with the chain
            await self.app({**scope, KEY: handoff}, receive, send)
        except BaseException:
            handoff.abandon()
            raise
        await handoff.finish()
