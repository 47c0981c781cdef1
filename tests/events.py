"""The sample Lambda events in ``events/``: the files ``sam local invoke -e`` takes, loaded once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json`` that a test may change."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return event
