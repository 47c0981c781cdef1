"""Streams handed off past the request's chain (``web.handoff``), through real uvicorn: the
middleware inside sees the app return while the stream goes on, the request's dependencies are
released then, the body arrives whole and in order, and the response's close runs exactly once
however it ends; without the layer (a host app that leaves it out) nothing changes."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from jobtail.web.app import create_app
from jobtail.web.handoff import KEY, HandoffMiddleware
from jobtail.web.sse import StreamResponse

from .conftest import ServerThread
from .scripted import make_services
from .waiting import wait_for as until


class Held:
    """An object a request's dependency makes: alive as long as the request's chain is."""


class Recorder:
    """A host-like middleware inside the layer: notes when the app it wraps returns, and can
    fail on its way out (after the response was handed off)."""

    def __init__(self, app: ASGIApp, world: World) -> None:
        self.app, self.world = app, world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.world.returned.set()
            if self.world.fail_on_return:
                raise RuntimeError("a middleware failing after its app returned")


class World:
    """What the app under test does and what the test sees of it."""

    def __init__(self) -> None:
        self.returned = threading.Event()  # the chain inside the layer has returned
        self.release: anyio.Event | None = None  # set by the test: the stream may end
        self.closes = 0
        self.held: weakref.ref[Held] | None = None
        self.fail_on_return = False
        self.fail_body = False


def make_app(world: World, handoff: bool) -> FastAPI:
    app = FastAPI()

    def held() -> Iterator[Held]:
        value = Held()
        world.held = weakref.ref(value)
        yield value

    @app.api_route("/stream", methods=["GET", "HEAD"])
    async def stream(value: Held = Depends(held)) -> StreamResponse:  # noqa: B008 (a local dependency)
        release = world.release = anyio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await release.wait()
            if world.fail_body:
                raise RuntimeError("the body failing half way")
            yield b"data: last\n\n"

        def closed() -> None:
            world.closes += 1

        return StreamResponse(body(), ping=0, on_close=closed)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @app.get("/let-go")
    async def let_go() -> dict[str, bool]:
        assert world.release is not None
        world.release.set()
        return {"ok": True}

    app.add_middleware(Recorder, world=world)
    if handoff:
        app.add_middleware(HandoffMiddleware)
    return app


@pytest.fixture
def served(serve: Callable[[object], ServerThread]) -> Callable[[bool], tuple[World, str]]:
    def start(handoff: bool) -> tuple[World, str]:
        world = World()
        return world, serve(make_app(world, handoff)).url

    return start


def _collected(world: World) -> bool:
    gc.collect()
    return world.held is not None and world.held() is None


def test_the_chain_returns_and_lets_go_while_the_stream_goes_on(
    served: Callable[[bool], tuple[World, str]],
) -> None:
    world, url = served(True)
    with (
        httpx.Client(base_url=url, timeout=10) as client,
        client.stream("GET", "/stream") as response,
    ):
        chunks = response.iter_bytes()
        assert next(chunks) == b"data: first\n\n"
        until(world.returned.is_set, timeout=10)  # the middleware inside saw the app return
        until(lambda: _collected(world), timeout=10)  # and the request's dependency is gone
        assert world.closes == 0  # while the stream is still open
        assert client.get("/let-go").status_code == 200
        assert b"".join(chunks) == b"data: last\n\n"
    until(lambda: world.closes == 1, timeout=10)


def test_without_the_layer_the_chain_holds_until_the_stream_ends(
    served: Callable[[bool], tuple[World, str]],
) -> None:
    world, url = served(False)
    with (
        httpx.Client(base_url=url, timeout=10) as client,
        client.stream("GET", "/stream") as response,
    ):
        chunks = response.iter_bytes()
        assert next(chunks) == b"data: first\n\n"
        assert not world.returned.is_set()
        assert not _collected(world)  # the dependency lives as long as the stream
        assert client.get("/let-go").status_code == 200
        assert b"".join(chunks) == b"data: last\n\n"
    until(world.returned.is_set, timeout=10)
    until(lambda: world.closes == 1, timeout=10)


def test_a_viewer_leaving_closes_the_handed_off_response_once(
    served: Callable[[bool], tuple[World, str]],
) -> None:
    world, url = served(True)
    with (
        httpx.Client(base_url=url, timeout=10) as client,
        client.stream("GET", "/stream") as response,
    ):
        assert next(response.iter_bytes()) == b"data: first\n\n"
        until(world.returned.is_set, timeout=10)
    until(lambda: world.closes == 1, timeout=10)  # the disconnect ended the handed-off body
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/let-go").status_code == 200  # the server is fine afterwards
    assert world.closes == 1


def test_a_chain_failing_after_the_handoff_still_closes_the_response_once(
    served: Callable[[bool], tuple[World, str]],
) -> None:
    world, url = served(True)
    world.fail_on_return = True
    with httpx.Client(base_url=url, timeout=10) as client:
        with pytest.raises(httpx.HTTPError), client.stream("GET", "/stream") as response:
            b"".join(response.iter_bytes())  # the server gives up on the response
        until(lambda: world.closes == 1, timeout=10)  # its close ran, its rest never started


def test_head_is_answered_in_the_chain(served: Callable[[bool], tuple[World, str]]) -> None:
    """No body to hand off: the headers and the end at once (a handed-off HEAD would run the
    body and wait for the test to let it end)."""
    world, url = served(True)
    with httpx.Client(base_url=url, timeout=10) as client:
        head = client.head("/stream")
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        until(lambda: world.closes == 1, timeout=10)  # while the client is still connected


def test_a_handed_off_body_that_fails_closes_the_response_once(
    served: Callable[[bool], tuple[World, str]],
) -> None:
    world, url = served(True)
    world.fail_body = True
    with (
        httpx.Client(base_url=url, timeout=10) as client,
        client.stream("GET", "/stream") as response,
    ):
        chunks = response.iter_bytes()
        assert next(chunks) == b"data: first\n\n"
        until(world.returned.is_set, timeout=10)
        assert client.get("/let-go").status_code == 200
        with pytest.raises(httpx.HTTPError):  # the server cuts the response short
            b"".join(chunks)
        until(lambda: world.closes == 1, timeout=10)


@pytest.mark.anyio
async def test_the_layer_passes_other_scopes_through_untouched() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def nothing() -> dict[str, str]:
        return {}

    async def ignore(_: object) -> None:
        return None

    layer = HandoffMiddleware(app)
    lifespan: Scope = {"type": "lifespan"}
    await layer(lifespan, nothing, ignore)
    http: Scope = {"type": "http", "path": "/"}
    await layer(http, nothing, ignore)
    assert seen[0] is lifespan
    assert seen[1] is not http and KEY in seen[1] and KEY not in http


def test_a_request_body_reaches_the_app_through_the_layer(
    served: Callable[[bool], tuple[World, str]],
) -> None:
    """The chain reads the request with the server's ``receive``, as without the layer."""
    _world, url = served(True)
    body = b"x" * 100_000  # more than one receive message
    with httpx.Client(base_url=url, timeout=10) as client:
        answer = client.post("/echo", content=body)
    assert answer.status_code == 200 and answer.content == body


@pytest.mark.anyio
async def test_a_chain_failing_before_any_handoff_raises_its_own_error() -> None:
    """Nothing was handed off: the layer has nothing to abandon and lets the error through."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the app failing before its response")

    async def nothing() -> dict[str, str]:
        return {}

    async def ignore(_: object) -> None:
        return None

    with pytest.raises(RuntimeError, match="failing before its response"):
        await HandoffMiddleware(app)({"type": "http", "path": "/"}, nothing, ignore)


def test_jobtail_app_hands_its_streams_off(tmp_path: Path) -> None:
    """``create_app`` puts the layer outside every other, Starlette's error middleware too."""
    services, _ = make_services(tmp_path)
    app = create_app(services=services)
    stack: object = app.build_middleware_stack()
    layers = []
    while stack is not None:
        layers.append(type(stack).__name__)
        stack = getattr(stack, "app", None)
    assert layers[:2] == ["HandoffMiddleware", "ServerErrorMiddleware"]
    assert "DrainingMiddleware" in layers and "AllowMiddleware" in layers
    services.close()
