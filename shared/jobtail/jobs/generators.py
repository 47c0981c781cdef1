"""Generators: what a run makes of an upload, chosen by the run's service name.

The built-ins (``pydantic``, ``dataclasses``, ``typeddict``, ``msgspec``) write Python models
with datamodel-code-generator (see ``jobs/datamodel.py``). Anything else plugs in here.

Adding a generator (an LLM call, say)
-------------------------------------
Subclass ``Generator``: ``name`` is the ``{service}`` in ``/runs/{upload_id}/{service}``,
``description`` shows on the page, and ``generate`` returns ``GeneratedCode``. Log through
``log`` as you go: every line is committed before a viewer sees it, so the user watches the
job live and can read it again later::

    class LlmClientGenerator(Generator):
        name = "llm-client"
        description = "An httpx client for the API, written by an LLM"

        def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
            log.info(f"asking the model about {upload.title!r}", model="my-model")
            log.progress(40, "waiting for the model")
            code = my_llm.complete(prompt_for(upload.document))
            return GeneratedCode(code=code, filename="client.py")

Then either call ``registry.register(LlmClientGenerator())`` where the app builds its registry,
or ship it in a package with an entry point, which ``default_registry()`` loads::

    [project.entry-points."jobtail.generators"]
    llm-client = "my_package.generators:LlmClientGenerator"

An entry point may name a Generator instance, a Generator class (called with no arguments) or a
factory returning one. The runner compiles Python output; it also executes it (the import
check) only when the generator sets ``import_check = True``: keep the default, False, for
output you do not trust, such as an LLM's.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..documents import ParsedUpload
    from ..logger import RunLogger

__all__ = [
    "ENTRY_POINT_GROUP",
    "GeneratedCode",
    "Generator",
    "GeneratorError",
    "GeneratorRegistry",
    "UnknownServiceError",
    "default_registry",
    "load_entry_points",
]

ENTRY_POINT_GROUP = "jobtail.generators"
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GeneratedCode:
    """A generator's output: the text, the file name it downloads as, and its language."""

    code: str
    filename: str
    language: str = "python"


class GeneratorError(Exception):
    """A generator could not produce code; the message is shown to the user as the run's error."""


class UnknownServiceError(LookupError):
    """No generator has this name; the message lists the ones there are."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = list(known)
        listed = ", ".join(self.known) or "none"
        super().__init__(f"unknown service {name!r}; known services: {listed}")


class Generator(ABC):
    """Turns a checked upload into code, logging into the run as it goes."""

    name: str = ""
    description: str = ""
    #: execute the generated module after compiling it; only for output that is safe to run
    import_check: bool = False

    @abstractmethod
    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        """Produce the code; raise (GeneratorError for a clear message) if it cannot."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class GeneratorRegistry:
    """The generators a deployment offers, by service name, in registration order."""

    def __init__(self, generators: Iterable[Generator] = ()) -> None:
        self._generators: dict[str, Generator] = {}
        for generator in generators:
            self.register(generator)

    def register(self, generator: Generator, *, replace: bool = False) -> Generator:
        """Add a generator; its name must be URL-safe and, unless ``replace``, new."""
        if not isinstance(generator, Generator):
            raise TypeError(f"{generator!r} is not a jobtail Generator")
        name = generator.name
        if not SERVICE_NAME.match(name or ""):
            raise ValueError(f"generator name {name!r} must match {SERVICE_NAME.pattern}")
        if name in self._generators and not replace:
            raise ValueError(f"a generator named {name!r} is already registered")
        self._generators[name] = generator
        return generator

    def get(self, name: str) -> Generator:
        try:
            return self._generators[name]
        except KeyError:
            raise UnknownServiceError(name, self.names()) from None

    def names(self) -> list[str]:
        return list(self._generators)

    def describe(self) -> list[dict[str, Any]]:
        """For the page's service picker and the API."""
        return [
            {"name": g.name, "description": g.description, "import_check": g.import_check}
            for g in self._generators.values()
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._generators

    def __len__(self) -> int:
        return len(self._generators)


def _instantiate(loaded: Any) -> Generator:
    """An entry point's object as a Generator: an instance, a class, or a factory."""
    if isinstance(loaded, Generator):
        return loaded
    if callable(loaded):
        made = loaded()
        if isinstance(made, Generator):
            return made
        raise TypeError(f"{loaded!r} returned {made!r}, not a Generator")
    raise TypeError(f"{loaded!r} is not a Generator, a Generator class or a factory")


def load_entry_points(
    registry: GeneratorRegistry, found: Iterable[EntryPoint] | None = None
) -> list[str]:
    """Register the plug-ins of the ``jobtail.generators`` group; a broken one is skipped."""
    if found is None:
        found = entry_points(group=ENTRY_POINT_GROUP)
    added: list[str] = []
    for entry_point in found:
        try:
            generator = _instantiate(entry_point.load())
            registry.register(generator)
        except Exception as exc:
            log.warning("generator plug-in %r not loaded: %s", entry_point.value, exc)
            continue
        added.append(generator.name)
    return added


def default_registry(plugins: Iterable[EntryPoint] | None = None) -> GeneratorRegistry:
    """The built-ins plus the installed plug-ins (or the given entry points)."""
    from .datamodel import builtin_generators

    registry = GeneratorRegistry(builtin_generators())
    load_entry_points(registry, plugins)
    return registry
