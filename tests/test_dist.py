"""The built wheel (``make dist``) is all a user needs: it carries every file of the package (the
page, the browser client, the samples, the SQL), and installed into a fresh venv its
``jobtail migrate`` applies the migrations it ships, from no checkout at all."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .pg import PgCluster

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared"


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args[:3]}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make dist``'s build: the sdist, then the wheel from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT], out, timeout=180)
    (built,) = out.glob("*.whl")
    return built


def _tracked_package_files() -> set[str]:
    """Every file of ``shared/jobtail`` the checkout tracks (a tracked symlink to a folder, the
    migrations, stands for that folder's files), relative to ``shared``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "shared/jobtail"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files: set[str] = set()
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        inside = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        files.update(str(p.relative_to(PACKAGE)) for p in inside)
    return {f for f in files if "__pycache__" not in f}


def test_the_wheel_carries_every_file_of_the_package(wheel: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to compare the wheel with")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_tracked_package_files() - names)
    assert not missing, f"the wheel lacks {missing}"
    assert "jobtail/web/static/jobtail/element.js" in names  # the router serves it
    sql = sorted(n for n in names if n.startswith("jobtail/store/migrations/"))
    assert sql and all(n.endswith(".sql") for n in sql)
    assert [Path(n).name for n in sql] == sorted(p.name for p in ROOT.glob("supabase/migrations/*"))


@pytest.mark.postgres
def test_jobtail_migrate_from_the_installed_wheel(
    wheel: Path, pg_cluster: PgCluster, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, timeout=60)
    python, jobtail = venv / "bin" / "python", venv / "bin" / "jobtail"
    # this pip, its configured indexes (as `make install` uses), into the fresh venv
    install = ["--python", python, "install", "-q", "--no-compile", f"{wheel}[postgres]"]
    _run([sys.executable, "-m", "pip", *install], tmp_path, timeout=180)
    where = _run([python, "-c", "import jobtail; print(jobtail.__file__)"], tmp_path, timeout=30)
    assert where.stdout.startswith(str(venv)), where.stdout  # not the checkout

    name = pg_cluster.create_database()
    try:
        url = pg_cluster.url(name)
        files = sorted(p.name for p in (ROOT / "supabase" / "migrations").glob("*.sql"))
        first = _run([jobtail, "migrate", url], tmp_path, timeout=60)  # run from no checkout
        assert f"applied {len(files)} migration(s)" in first.stdout, first.stdout
        again = _run([jobtail, "migrate", url], tmp_path, timeout=60)
        assert "applied 0 migration(s)" in again.stdout
        with pg_cluster.connect(name) as conn:
            applied = [r[0] for r in conn.execute("select name from jobtail_migrations order by 1")]
            tables = {
                r[0]
                for r in conn.execute(
                    "select table_name from information_schema.tables where table_schema = 'public'"
                )
            }
            functions = {
                r[0]
                for r in conn.execute("select proname from pg_proc where proname like 'jobtail%'")
            }
        assert applied == files
        assert {"runs", "runs_logs", "streams", "streams_chunks", "streams_producers"} <= tables
        assert {"jobtail_append", "jobtail_claim_run", "jobtail_finish_run"} <= functions
    finally:
        pg_cluster.drop_database(name)
