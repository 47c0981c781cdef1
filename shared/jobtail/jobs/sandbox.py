"""The import check of generated code, in a separate process that holds no secrets.

Executing a generated module proves more than compiling it (pydantic builds its models, forward
references resolve), but the module comes from a user's document, or an LLM: code that runs at
import must not run where the store's credentials live. So ``import_check`` starts a fresh
interpreter (``python -I``: no PYTHON* variables, no user site, no script folder on the path)
with a scrubbed environment (no JOBTAIL_*, AWS_*, SUPABASE_*, PG* or anything else but a few
locale variables), an empty temporary working directory, CPU and memory limits and a timeout,
sends it the source on stdin and reads one JSON line back: the classes defined, or the error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from .generators import GeneratorError

if TYPE_CHECKING:
    from ..logger import RunLogger

__all__ = ["CHECKER", "SAFE_ENV", "import_check", "run_checker"]

SAFE_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
"""The only variables the checker inherits."""

CHECKER = r"""
import json, resource, sys, types
resource.setrlimit(resource.RLIMIT_CPU, (int(sys.argv[1]), int(sys.argv[1])))
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
source, filename = sys.stdin.read(), sys.argv[3]
name = "_jobtail_check"
module = types.ModuleType(name)
sys.modules[name] = module
try:
    exec(compile(source, filename, "exec"), module.__dict__)
except ImportError as exc:
    answer = {"skipped": str(exc)}
except BaseException as exc:
    answer = {"error": f"{type(exc).__name__}: {exc}"}
else:
    answer = {"classes": [k for k, v in vars(module).items()
                          if isinstance(v, type) and v.__module__ == name]}
sys.stdout.flush()
sys.__stdout__.write("\n" + json.dumps(answer) + "\n")
"""


def run_checker(
    source: str, filename: str, timeout: float = 60.0, memory: int = 1 << 30
) -> dict[str, object]:
    """Execute ``source`` in the sandbox; its answer: ``classes``, ``skipped`` or ``error``."""
    env = {key: os.environ[key] for key in SAFE_ENV if key in os.environ}
    cpu = max(1, int(timeout))
    args = [sys.executable, "-I", "-c", CHECKER, str(cpu), str(memory), filename]
    with tempfile.TemporaryDirectory(prefix="jobtail-check-") as cwd:
        try:
            done = subprocess.run(
                args, input=source, capture_output=True, text=True, env=env, cwd=cwd,
                timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"the import did not finish within {timeout:g} s"}
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"error": f"the import check process died (exit {done.returncode})"}
    return answer


def import_check(source: str, filename: str, logger: RunLogger) -> int | None:
    """The runner's import check, in the sandbox: the number of classes; None if skipped (a
    package this worker lacks); GeneratorError if the module fails on import."""
    started = time.perf_counter()
    answer = run_checker(source, filename)
    if "skipped" in answer:
        reason = answer["skipped"]
        logger.warning(f"Import check skipped: {reason} (a package this worker does not have)")
        return None
    if "error" in answer:
        raise GeneratorError(f"the generated code fails on import: {answer['error']}")
    found = answer.get("classes")
    classes = [str(name) for name in found] if isinstance(found, list) else []
    ms = (time.perf_counter() - started) * 1000
    logger.info(
        f"Import check passed: {len(classes)} classes defined in {ms:.0f} ms (separate process)"
    )
    logger.debug(f"Classes: {', '.join(classes)}")
    return len(classes)
