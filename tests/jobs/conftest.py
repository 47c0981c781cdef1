"""Real stores and blobs on tmp_path for the job tests; no fakes of what is under test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobtail.blobs import LocalBlobs
from jobtail.jobs.generators import GeneratorRegistry, default_registry
from jobtail.jobs.runner import run_job
from jobtail.store.base import LogLine, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import Uploads
from tests.waiting import wait_for


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "s.db")
    yield db
    db.close()


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobs:
    return LocalBlobs(tmp_path / "blobs")


@pytest.fixture
def uploads(blobs: LocalBlobs) -> Uploads:
    return Uploads(blobs)


@pytest.fixture
def registry() -> GeneratorRegistry:
    return default_registry(plugins=[])


@pytest.fixture
def run(
    store: SQLiteStore, uploads: Uploads, blobs: LocalBlobs, registry: GeneratorRegistry
) -> Callable[..., RunStatus]:
    """Execute one run the way a worker does, with this test's store, blobs and registry."""

    def execute(run_id: str, **options: object) -> RunStatus:
        options = {"uploads": uploads, "blobs": blobs, "registry": registry} | options
        return run_job(run_id, store=store, **options)  # type: ignore[arg-type]

    return execute


@pytest.fixture
def log_of(store: SQLiteStore) -> Callable[[str], list[LogLine]]:
    """Every committed line of a run, in order."""
    return lambda run_id: store.read(run_id, limit=100_000)


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """Poll a condition until it holds or a deadline passes (for state with no wake-up)."""
    return wait_for
