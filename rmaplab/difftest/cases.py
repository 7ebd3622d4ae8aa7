"""Saved disagreements: a shrunk program with what the kernel counted and why.

A case is a trace file (tests/data/difftest/*.jsonl) whose ``#`` header says what
it shows, which kernel source explains it, how it was found, and holds, as JSON,
the kernel's counts, the interpreter's prelude of that run and the model's counts
before the fix.  ``rmaplab replay`` reads it as an ordinary trace; the tests
replay it against the recorded kernel counts (everywhere) and against the live
kernel (where perf works).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmaplab import traces
from rmaplab.errors import RmaplabError

Event = dict[str, Any]
_JSON_FIELDS = ("kernel", "model_before", "prelude")
_TEXT_FIELDS = ("title", "shows", "source", "found", "backend", "policy", "merge_rule")


@dataclass
class Case:
    title: str
    shows: str                   # what the kernel does that the model did not
    source: str                  # the kernel source lines that say so
    found: str                   # how: command, seed, shrinking
    backend: str
    policy: str
    merge_rule: str
    kernel: dict[str, int]       # the kernel's counts for the program
    model_before: dict[str, int]  # the model's counts that differed, before the fix
    prelude: list[Event]         # the interpreter's address space at window start
    events: list[Event]


def _plain(ev: Event) -> Event:
    """The event without fields that only repeat the trace format's defaults."""
    defaults = traces.SCHEMA[ev["op"]][1]
    return {k: v for k, v in ev.items() if k not in defaults or v != defaults[k]}


def save(case: Case, path: Path) -> Path:
    lines = []
    for name in _TEXT_FIELDS:
        for i, part in enumerate(str(getattr(case, name)).splitlines() or [""]):
            lines.append(f"# {name}: {part}" if i == 0 else f"#   {part}")
    for name in _JSON_FIELDS:
        value = getattr(case, name)
        if name == "prelude":
            value = [json.loads(traces.dumps(_plain(ev))) for ev in value]
        lines.append(f"# {name}: {json.dumps(value, separators=(',', ':'))}")
    return traces.write([_plain(ev) for ev in case.events], path,
                        header="\n".join(lines) + "\n")


def load(path: Path) -> Case:
    fields: dict[str, Any] = {}
    last = None
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.startswith("#"):
            continue
        if line.startswith("#   ") and last in _TEXT_FIELDS:
            fields[last] += "\n" + line[4:]
            continue
        name, sep, value = line[2:].partition(": ")
        if not sep or name not in (*_TEXT_FIELDS, *_JSON_FIELDS):
            raise RmaplabError(f"unknown case header {name!r}", path=path, line=n)
        fields[name] = json.loads(value) if name in _JSON_FIELDS else value
        last = name
    missing = [f for f in (*_TEXT_FIELDS, *_JSON_FIELDS) if f not in fields]
    if missing:
        raise RmaplabError(f"case header lacks {', '.join(missing)}", path=path)
    fields["prelude"] = [traces.validate(ev, str(path), 0) for ev in fields["prelude"]]
    fields["events"] = [ev for _, ev in traces.load(path)]
    return Case(**fields)


__all__ = ["Case", "load", "save"]
