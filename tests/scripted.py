"""A plug-in generator the tests drive step by step, through the real plug-in interface."""

from __future__ import annotations

import threading
from pathlib import Path

from jobtail.config import Settings
from jobtail.jobs.generators import GeneratedCode, Generator, GeneratorError, default_registry
from jobtail.logger import RunLogger
from jobtail.services import Services
from jobtail.store.base import LogStore
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import ParsedUpload


class ScriptedGenerator(Generator):
    """Logs ``messages`` one by one; with ``stepped`` each waits for the test's go-ahead."""

    name = "scripted"
    description = "test generator driven by the test"

    def __init__(self) -> None:
        self.messages: list[str] = [f"line {n}" for n in range(1, 21)]
        self.stepped = False
        self.steps = threading.Semaphore(0)
        self.fail_with: str | None = None
        self.started = threading.Event()

    def step(self, count: int = 1) -> None:
        for _ in range(count):
            self.steps.release()

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        self.started.set()
        for message in self.messages:
            if self.stepped and not self.steps.acquire(timeout=30):
                raise GeneratorError("test never stepped the generator")
            log.info(message)
        if self.fail_with:
            raise GeneratorError(self.fail_with)
        return GeneratedCode(code="VALUE = 1\n", filename="scripted.py")


class CountingStore(SQLiteStore):
    """A real SQLite store that counts its range reads."""

    range_reads = 0

    def read(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.range_reads += 1
        return super().read(*args, **kwargs)


def make_services(
    tmp_path: Path, store: LogStore | None = None, **settings: object
) -> tuple[Services, ScriptedGenerator]:
    """Services over a real store (SQLite by default) with the scripted generator registered."""
    generator = ScriptedGenerator()
    registry = default_registry()
    registry.register(generator)
    store = store or CountingStore(tmp_path / "store.db")
    config = Settings(data_dir=tmp_path, **settings)  # type: ignore[arg-type]
    return Services.from_settings(config, store=store, registry=registry), generator
