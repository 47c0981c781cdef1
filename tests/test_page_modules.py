"""The page's ES modules and index.html's modulepreload list stay in step.

The page preloads every module ``app.js`` reaches so the browser fetches them in one round trip
instead of one import level at a time; a module added by a split and left out of the list still
works, only slower, so no browser test would notice. Every module under ``static/`` is reached.
"""

from __future__ import annotations

import posixpath
import re

from jobtail.web.routes.pages import PAGE, STATIC

IMPORT = re.compile(r"""^\s*(?:import|export)\b[^"'`]*?["'](\.{1,2}/[^"']+\.js)["']""", re.M)
PRELOAD = re.compile(r'<link rel="modulepreload" href="static/([^"]+)">')


def reached(entry: str) -> set[str]:
    """The modules ``entry`` (a path under ``static/``) imports, directly or not, and itself."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        text = (STATIC / module).read_text()
        for spec in IMPORT.findall(text):
            todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(module), spec)))
    return seen


def test_index_preloads_every_module_the_page_imports() -> None:
    assert '<script type="module" src="static/app.js"></script>' in PAGE
    assert set(PRELOAD.findall(PAGE)) == reached("app.js") - {"app.js"}


def test_every_module_under_static_is_reached_from_the_page() -> None:
    files = {str(p.relative_to(STATIC)) for p in STATIC.rglob("*.js")}
    assert files == reached("app.js")
