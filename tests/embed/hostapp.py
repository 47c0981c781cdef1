"""A host app that is not jobtail's: its own auth, its own routes, jobtail's router mounted."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException

import jobtail.fastapi
from jobtail.services import Services
from jobtail.store import LogStore

PREFIX = "/api/jobs"
USER_HEADER = {"X-Host-User": "alice"}
SECRET = "host-secret-for-stream-tokens"


def host_auth(x_host_user: Annotated[str | None, Header()] = None) -> str:
    """The host's own auth: any scheme it likes, here a header naming a known user."""
    if x_host_user != "alice":
        raise HTTPException(401, "the host app wants X-Host-User")
    return x_host_user


def host_app(store: LogStore | Services | str, prefix: str = PREFIX) -> FastAPI:
    app = FastAPI(title="someone else's app")

    @app.get("/hello")
    def hello(user: Annotated[str, Depends(host_auth)]) -> Any:
        return {"hello": user}

    jobs = jobtail.fastapi.router(store, dependencies=[Depends(host_auth)], secret=SECRET)
    app.include_router(jobs, prefix=prefix)
    return app
