"""Wires the parts from settings: store, blobs, uploads, generators, dispatcher.

One place builds them so the web app, the CLI and the Lambda handlers run the same objects.
Every part can be handed in instead (tests pass their own), following the constructor-injection
style of the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .blobs import BlobStore, blobs_from_url
from .config import Settings
from .janitor import Janitor, SweepResult
from .jobs.dispatch import Dispatcher, InlineDispatcher, SqsDispatcher
from .jobs.generators import GeneratorRegistry, default_registry
from .jobs.runner import run_job
from .store import LogStore, RunStatus, from_url
from .uploads import Uploads


@dataclass
class Services:
    settings: Settings
    store: LogStore
    blobs: BlobStore
    uploads: Uploads
    registry: GeneratorRegistry
    dispatcher: Dispatcher | None = field(default=None)

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        store: LogStore | None = None,
        blobs: BlobStore | None = None,
        registry: GeneratorRegistry | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> Services:
        settings = settings or Settings()
        store = store or from_url(settings.store, settings.data_dir)
        blobs = blobs or blobs_from_url(settings.blobs, settings.data_dir)
        services = cls(
            settings=settings,
            store=store,
            blobs=blobs,
            uploads=Uploads(blobs, max_bytes=settings.max_upload_bytes),
            registry=registry or default_registry(),
        )
        services.dispatcher = dispatcher or services._default_dispatcher()
        return services

    def _default_dispatcher(self) -> Dispatcher:
        if self.settings.dispatcher == "sqs":
            if not self.settings.queue_url:
                raise ValueError("JOBTAIL_DISPATCHER=sqs needs JOBTAIL_QUEUE_URL")
            return SqsDispatcher(self.settings.queue_url)
        return InlineDispatcher(self.run, max_workers=self.settings.workers)

    def run(self, run_id: str, *, deadline: float | None = None) -> RunStatus:
        """Run one job to its end (what the inline dispatcher and the SQS worker call);
        ``deadline`` (``time.monotonic()``) is a Lambda's: see ``run_job``."""
        return run_job(
            run_id,
            store=self.store,
            uploads=self.uploads,
            blobs=self.blobs,
            registry=self.registry,
            heartbeat_interval=self.settings.heartbeat_interval,
            max_line_chars=self.settings.max_line_chars,
            max_lines=self.settings.max_lines,
            deadline=deadline,
            keep_tail=self.settings.keep_tail_lines,
        )

    @cached_property
    def janitor(self) -> Janitor:
        """The in-process janitor (it remembers store outages between sweeps)."""
        return Janitor(
            self.store,
            stale_after=self.settings.stale_after,
            retention_days=self.settings.retention_days,
            queued_after=self.settings.queued_timeout,
        )

    def sweep(self) -> SweepResult:
        """Fail runs whose worker died, purge old ones, remove expired streams (the janitor's
        job, in-process)."""
        return self.janitor.sweep()

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close()
        if "janitor" in vars(self):  # made by a sweep: its stream store goes first
            self.janitor.close()
        self.store.close()
