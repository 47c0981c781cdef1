"""Tracebacks fit to show a viewer: the server's absolute paths shortened.

A run's log is shown to whoever may read the run, so a traceback must not tell them where the
server keeps its code, its virtualenv or its data. Paths under the working directory become
relative, paths inside an installed package or the standard library start at the package
(``pydantic/main.py``), and anything else keeps only its last two parts.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import traceback
from functools import lru_cache
from pathlib import Path

import jobtail

__all__ = ["format_exception", "short_path", "shorten_paths"]


@lru_cache(maxsize=1)
def _prefixes() -> tuple[str, ...]:
    """Folders whose own path is the server's business, longest first (most specific wins)."""
    folders = {
        str(Path(jobtail.__file__).resolve().parent.parent),  # the folder holding jobtail/
        *site.getsitepackages(),
        site.getusersitepackages(),
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        *(entry for entry in sys.path if entry and os.path.isabs(entry)),
    }
    cleaned = {folder.rstrip(os.sep) + os.sep for folder in folders if folder and folder != "/"}
    return tuple(sorted(cleaned, key=len, reverse=True))


def short_path(path: str) -> str:
    """One file path as a viewer may see it."""
    cwd = os.getcwd().rstrip(os.sep) + os.sep
    candidates = [cwd, *_prefixes()]
    for prefix in sorted(candidates, key=len, reverse=True):
        if path.startswith(prefix):
            return path[len(prefix) :]
    if os.path.isabs(path):
        parts = Path(path).parts
        return os.path.join("…", *parts[-2:]) if len(parts) > 2 else path
    return path


def shorten_paths(text: str) -> str:
    """Every known server folder in ``text`` (a traceback, an error message) cut away."""
    cwd = os.getcwd().rstrip(os.sep) + os.sep
    for prefix in sorted({cwd, *_prefixes()}, key=len, reverse=True):
        text = text.replace(prefix, "")
    return text


def format_exception(exc: BaseException) -> str:
    """The exception's traceback, as ``traceback.format_exception`` would give it, with every
    frame's file shortened and known server folders removed from the messages too."""
    summary = traceback.TracebackException.from_exception(exc)
    _shorten_frames(summary)
    return shorten_paths("".join(summary.format())).rstrip()


def _shorten_frames(summary: traceback.TracebackException) -> None:
    for frame in summary.stack:
        frame.filename = short_path(frame.filename)
    for linked in (summary.__cause__, summary.__context__):
        if linked is not None:
            _shorten_frames(linked)
    for group in getattr(summary, "exceptions", None) or ():
        _shorten_frames(group)
