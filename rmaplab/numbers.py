"""paper/numbers.json: every number the paper quotes, written by the notebooks.

Each notebook owns a section (``claim``, ``model``, ...): :meth:`Numbers.save`
replaces that section's keys and keeps the others, so notebooks can run alone.
Each entry holds the raw value, the text the paper prints, its unit and the
notebook that produced it.  The file is written atomically with sorted keys, so
two runs on the same inputs give identical bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.paths import paper_dir


def numbers_path() -> Path:
    return paper_dir() / "numbers.json"


def load(path: Path | None = None) -> dict[str, dict[str, Any]]:
    path = path or numbers_path()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RmaplabError(f"not valid JSON ({e.msg})", path=path, line=e.lineno) from None


def _plain(value: Any) -> Any:
    """numpy scalars to Python; NaN is refused (the paper must not print 'nan')."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a number for the paper is NaN or infinite")
    return value


class Numbers:
    def __init__(self, section: str, source: str) -> None:
        if not section.isidentifier():
            raise ValueError(f"section {section!r} must be an identifier")
        self.section = section
        self.source = source
        self.entries: dict[str, dict[str, Any]] = {}

    def add(self, key: str, value: Any, fmt: str = "{:.1f}", unit: str = "",
            text: str | None = None) -> str:
        """Record ``section.key``; returns the text the paper will print."""
        value = _plain(value)
        shown = text if text is not None else (fmt.format(value) if value is not None else "")
        self.entries[f"{self.section}.{key}"] = {
            "value": value, "text": shown, "unit": unit, "source": self.source,
        }
        return shown + unit

    def save(self, path: Path | None = None) -> Path:
        path = path or numbers_path()
        current = load(path)
        prefix = self.section + "."
        merged = {k: v for k, v in current.items() if not k.startswith(prefix)}
        merged.update(self.entries)
        atomic.write_text(path, json.dumps(merged, indent=1, sort_keys=True) + "\n")
        return path


def policy_key(name: str) -> str:
    """A policy name inside a numbers.json key: ``v5.4`` -> ``v54``, ``wei-intended`` ->
    ``wei_intended``, ``v6.0+4e4a9eb`` -> ``v60_plus_4e4a9eb``."""
    return name.replace(".", "").replace("-", "_").replace("+", "_plus_")
