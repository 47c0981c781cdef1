"""PostgREST's RPC contract served from a real PostgreSQL database, as an httpx transport.

SupabaseStore talks to it through the real supabase-py client (``ClientOptions(httpx_client=)``),
so the HTTP requests are the client's own and the SQL functions run for real. What is modelled:
POST ``/rest/v1/rpc/<fn>`` with a JSON object of named arguments, GET with them in the query
string (in a read-only transaction), the ``apikey`` + ``Authorization: Bearer`` pair naming a
role, results shaped as PostgREST shapes them (a scalar, an object for one composite row, an
array for sets) and errors as ``{code, message, details, hint}`` with PostgREST's HTTP statuses.
Faults queued in ``faults`` (responses or exceptions) are served first, and ``lost_replies``
runs calls but drops their replies, for retry tests.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
import httpx
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool
from supabase import Client, ClientOptions, create_client

URL = "https://jobtail-test.supabase.co"
SERVICE_KEY = "service-role-key"
ANON_KEY = "anon-key"
PREFIX = "/rest/v1/rpc/"

FUNCTION_SQL = """
select p.proretset, t.typtype = 'c' or p.prorettype = 'record'::regtype,
       coalesce(p.proargnames, '{}'), p.pronargs, p.pronargdefaults,
       (select coalesce(array_agg(format_type(a.oid, null) order by a.i), '{}')
          from unnest(p.proargtypes::oid[]) with ordinality as a(oid, i))
  from pg_proc p join pg_type t on t.oid = p.prorettype
 where p.proname = %s and p.pronamespace = 'public'::regnamespace
"""
STATUS = {"23503": 409, "23505": 409, "25006": 405, "P0001": 400, "42883": 404, "42P01": 404}
STATUS_CLASS = {"08": 503, "53": 503, "40": 500, "57": 500, "XX": 500, "P0": 500, "25": 500}


def error(status: int, code: str, message: str, details: str | None = None) -> httpx.Response:
    body = {"code": code, "message": message, "details": details, "hint": None}
    return httpx.Response(status, json=body)


def status_for(sqlstate: str, role: str | None) -> int:
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    if sqlstate == "42501":
        return 401 if role == "anon" else 403
    return STATUS.get(sqlstate) or STATUS_CLASS.get(sqlstate[:2], 400)


class FakePostgrest:
    """Callable for ``httpx.MockTransport``; records every request it gets."""

    def __init__(self, conninfo: str, keys: Mapping[str, str | None] | None = None) -> None:
        self.keys = dict(keys or {SERVICE_KEY: None, ANON_KEY: "anon"})
        self.requests: list[httpx.Request] = []
        self.faults: deque[httpx.Response | Exception] = deque()
        self.lost_replies = 0
        """Calls still to run whose reply is then lost (a timeout), as when a network drops."""
        self._lock = threading.Lock()
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
            min_size=1,
            max_size=8,
            open=False,
        )
        self.pool.open(wait=True)

    def client(self, key: str = SERVICE_KEY) -> Client:
        """A real supabase-py client whose HTTP goes through this fake."""
        http = httpx.Client(transport=httpx.MockTransport(self))
        return create_client(URL, key, options=ClientOptions(httpx_client=http))

    def close(self) -> None:
        self.pool.close()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            fault = self.faults.popleft() if self.faults else None
        if isinstance(fault, Exception):
            raise fault
        if fault is not None:
            return fault
        key = request.headers.get("apikey", "")
        if key not in self.keys or request.headers.get("authorization") != f"Bearer {key}":
            return httpx.Response(401, json={"message": "Invalid API key"})
        if not request.url.path.startswith(PREFIX):
            return error(404, "PGRST125", f"Invalid path {request.url.path}")
        fn = request.url.path.removeprefix(PREFIX)
        if request.method == "GET":
            args: Any = dict(request.url.params)
        elif request.method == "POST":
            args = json.loads(request.content or b"{}")
        else:
            return error(405, "PGRST117", f"Unsupported HTTP method: {request.method}")
        if not isinstance(args, dict):
            return error(400, "PGRST102", "the body must be a JSON object of arguments")
        response = self._call(fn, args, self.keys[key], read_only=request.method == "GET")
        with self._lock:
            lost, self.lost_replies = self.lost_replies > 0, max(0, self.lost_replies - 1)
        if lost:
            raise httpx.ReadTimeout("the reply was lost", request=request)
        return response

    def _call(
        self, fn: str, args: dict[str, Any], role: str | None, read_only: bool
    ) -> httpx.Response:
        with self.pool.connection() as conn:
            found = conn.execute(FUNCTION_SQL, (fn,)).fetchall()
            query = self._query(fn, args, found)
            if query is None:
                message = f"Could not find the function public.{fn}({', '.join(sorted(args))})"
                return error(404, "PGRST202", message)
            try:
                with conn.transaction():
                    if read_only:
                        conn.execute("set transaction read only")
                    if role:
                        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
                    body = conn.execute(query, (json.dumps(args),)).fetchone()
            except psycopg.Error as exc:
                diag = exc.diag
                code = exc.sqlstate or "XX000"
                return error(
                    status_for(code, role),
                    code,
                    diag.message_primary or str(exc),
                    diag.message_detail,
                )
        content = (body[0] if body else None) or "null"
        return httpx.Response(
            200,
            content=content.encode(),
            headers={"content-type": "application/json; charset=utf-8"},
        )

    @staticmethod
    def _query(fn: str, args: dict[str, Any], found: list[Any]) -> sql.Composed | None:
        """The SELECT PostgREST would run for these named arguments, or None if none fits."""
        if len(found) != 1:
            return None
        retset, composite, names, nargs, ndefaults, types = found[0]
        names = names[:nargs]
        if not set(args) <= set(names) or not set(names[: nargs - ndefaults]) <= set(args):
            return None
        used = [(name, kind) for name, kind in zip(names, types, strict=True) if name in args]
        record = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in used
        )
        call = sql.SQL("{}({})").format(
            sql.Identifier(fn),
            sql.SQL(", ").join(
                sql.SQL("{0} => a.{0}").format(sql.Identifier(name)) for name, _ in used
            ),
        )
        source: sql.Composable = sql.SQL("json_to_record(%s::json) as a({})").format(record)
        if not used:
            source = sql.SQL("(select %s::json) as a")
        if composite:
            shape = "coalesce(json_agg(r), '[]')" if retset else "to_json(r)"
            template = "select ({})::text from {} cross join lateral {} as r"
        else:
            shape = "coalesce(json_agg(r.v), '[]')" if retset else "to_json(r.v)"
            template = "select ({})::text from {} cross join lateral {} as r(v)"
        return sql.SQL(template).format(sql.SQL(shape), source, call)


class PostgrestApp:
    """The fake over real HTTP: an ASGI app for uvicorn, so a jobtail server in another
    process can use it as its ``SUPABASE_URL``. Each call runs in a worker thread."""

    def __init__(self, fake: FakePostgrest) -> None:
        self.fake = fake

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        request = httpx.Request(
            scope["method"],
            httpx.URL("http://postgrest" + target.decode("ascii")),
            headers=[
                (key.decode("latin-1"), value.decode("latin-1")) for key, value in scope["headers"]
            ],
            content=body,
        )
        response = await anyio.to_thread.run_sync(self.fake, request)
        content = response.content
        headers = [
            (key.encode("latin-1"), value.encode("latin-1"))
            for key, value in response.headers.items()
            if key.lower() not in ("content-length", "transfer-encoding")
        ]
        headers.append((b"content-length", str(len(content)).encode()))
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": content})
