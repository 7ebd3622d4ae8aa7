"""Helpers shared by the line-oriented parsers: group headings, clock values, run numbering."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rmaplab.errors import RmaplabError
from rmaplab.timings._schema import TimingRecord

# A heading such as "Origin:" or "Patched kernel:" on a line of its own labels the
# runs that follow it (the seed email and most LKML posts label A/B groups this way).
HEADING = re.compile(r"^\s*(?P<label>[A-Za-z][^:]{0,60}?)\s*:\s*$")


def heading(line: str) -> str | None:
    m = HEADING.match(line)
    return m.group("label") if m else None


def number(text: str, *, source: str, line: int, what: str) -> float:
    """A decimal number that may use a decimal comma (bash prints the locale's)."""
    try:
        return float(text.replace(",", "."))
    except ValueError:
        raise RmaplabError(f"{what}: {text!r} is not a number", path=source, line=line) from None


def clock(text: str, *, source: str, line: int) -> float:
    """GNU time's %E: ``M:SS.cc`` below an hour, ``H:MM:SS`` (no fraction) from one hour."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise RmaplabError(
            f"elapsed time {text!r} is neither M:SS.cc nor H:MM:SS", path=source, line=line
        )
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + number(part, source=source, line=line, what="elapsed time")
    return seconds


def number_runs(records: Iterable[TimingRecord]) -> list[TimingRecord]:
    """Give runs 1, 2, ... within each group in order of appearance (parsers emit run=0)."""
    out: list[TimingRecord] = []
    counters: dict[tuple[str | None, int], int] = {}
    seen_block: dict[str | None, int] = {}
    for rec in records:
        if rec.kind != "run":
            out.append(rec)
            continue
        block = rec.extra.get("_block", rec.line)
        key = (rec.group, block)
        if key not in counters:
            seen_block[rec.group] = seen_block.get(rec.group, 0) + 1
            counters[key] = seen_block[rec.group]
        extra = {k: v for k, v in rec.extra.items() if k != "_block"}
        out.append(
            TimingRecord(
                rec.source, rec.line, rec.group, counters[key], rec.metric, rec.seconds,
                rec.kind, rec.n, rec.format, extra,
            )
        )
    return out
