"""Apply ``supabase/migrations/*.sql`` to a PostgreSQL database: each file once, in name order.

The same files serve Supabase (``supabase db push``) and plain PostgreSQL (``jobtail migrate``).
The package reads them as ``jobtail/store/migrations``: in a checkout a symlink to
``supabase/migrations`` (the one copy), in a wheel or an sdist the files themselves.
Each file runs in its own transaction together with the row recording it in
``jobtail_migrations``, so a failed file leaves nothing half applied and a second run applies only
new files. The files are idempotent as well, so a database migrated by other means is safe too.
An advisory lock keeps two migrators from interleaving.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import StoreError

if TYPE_CHECKING:
    import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The SQL shipped with the package (``supabase/migrations`` of the checkout it came from)."""

LOCK_KEY = 0x6A6F627461696C
"""pg_advisory_lock key ('jobtail' in ASCII), held while migrating."""

TRACKING_TABLE = """
create table if not exists jobtail_migrations (
    name       text primary key,
    applied_at timestamptz not null default now()
);
alter table jobtail_migrations enable row level security;
revoke all on table jobtail_migrations from public;
do $$ begin
    if exists (select 1 from pg_roles where rolname = 'anon') then
        revoke all on table jobtail_migrations from anon, authenticated;
    end if;
end $$;
"""


def migration_files(path: Path | str | None = None) -> list[Path]:
    """The ``*.sql`` files of a migrations folder, in the order they apply (by name)."""
    folder = MIGRATIONS_DIR if path is None else Path(path)
    if not folder.is_dir():
        raise StoreError(f"no migrations folder at {folder}: pass the path to supabase/migrations")
    files = sorted(folder.glob("*.sql"), key=lambda file: file.name)
    if not files:
        raise StoreError(f"no *.sql migrations in {folder}")
    return files


def apply_migrations(
    url: str, path: Path | str | None = None, *, connect_timeout: int = 10
) -> list[str]:
    """Apply the migrations not yet recorded in ``url``'s database; return their file names."""
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError("migrating needs psycopg: pip install 'jobtail[postgres]'") from exc

    files = migration_files(path)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL to migrate: {exc}".strip()) from exc
    applied: list[str] = []
    with conn:  # closing the session also releases the advisory lock
        try:
            conn.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
            conn.execute(TRACKING_TABLE)
            done = {row[0] for row in conn.execute("select name from jobtail_migrations")}
        except psycopg.Error as exc:
            raise StoreError(f"cannot prepare migrations: {exc}".strip()) from exc
        for file in files:
            if file.name not in done:
                _apply(conn, file)
                applied.append(file.name)
    return applied


def _apply(conn: psycopg.Connection[Any], file: Path) -> None:
    """Run one file and record it, in one transaction."""
    import psycopg

    try:
        with conn.transaction():
            # bytes: sent as is, several statements, no placeholder parsing
            conn.execute(file.read_bytes())
            conn.execute("insert into jobtail_migrations (name) values (%s)", (file.name,))
    except psycopg.Error as exc:
        raise StoreError(f"migration {file.name} failed: {exc}".strip()) from exc
