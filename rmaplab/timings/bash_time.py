"""bash's ``time`` keyword, and the POSIX ``time -p`` layout (bash or GNU time).

Accepted per line (whitespace or a colon after the name)::

    real<TAB>2m50.467s      default TIMEFORMAT (%3lR): unbounded minutes, never hours
    real 0m0,011s           decimal comma: bash prints the locale's decimal point
    real 0.01               time -p / POSIX mode (%2R)
    real: 12.345s           LKP-style TIMEFORMAT ('real: %Rs')

A block is a run of consecutive metric lines with no metric repeated.  A line
of its own ending in ':' (``Origin:``) labels the blocks after it, and so does a
bare label of at most four words (``Origin``, ``Patched kernel``) when the next
non-blank line starts a block, as in Wei Yang's v1 email.  Other text (an email's
prose) is not timing data and is passed over; a line that starts with
real/user/sys but does not parse is an error.
"""

from __future__ import annotations

import re

from rmaplab.errors import RmaplabError
from rmaplab.timings._schema import METRICS, TimingRecord
from rmaplab.timings._text import heading, number, number_runs

NAME = "bash-time"
DESCRIPTION = "bash `time` keyword output (default, -p, decimal comma, labelled groups)"

_METRIC_LINE = re.compile(r"^\s*(?P<metric>real|user|sys)\b[ \t:]*(?P<value>.*?)\s*$")
_LONG = re.compile(r"^(?P<min>\d+)m(?P<sec>\d+(?:[.,]\d+)?)s$")
_PLAIN = re.compile(r"^(?P<sec>\d+(?:[.,]\d+)?)s?$")
_BARE_LABEL = re.compile(r"^\s*(?P<label>[A-Za-z][\w.+-]*(?: [\w.+-]+){0,3})\s*$")


def _timing_value(line: str) -> re.Match[str] | None:
    """The metric line match, or None for prose.

    "user time fell 5%" or "sys 11.6% less" is prose: a timing line's value is one
    token starting with a digit.  Such a token that then fails to parse is an error.
    """
    m = _METRIC_LINE.match(line)
    if not m or not m["value"][:1].isdigit() or len(m["value"].split()) != 1:
        return None
    return m


def sniff(text: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        m = _timing_value(line)
        if m and (_LONG.match(m["value"]) or _PLAIN.match(m["value"])):
            return i
    return None


def _seconds(value: str, *, source: str, line: int) -> float:
    m = _LONG.match(value)
    if m:
        return int(m["min"]) * 60 + number(m["sec"], source=source, line=line, what="seconds")
    m = _PLAIN.match(value)
    if m:
        return number(m["sec"], source=source, line=line, what="seconds")
    raise RmaplabError(
        f"cannot read time value {value!r}",
        path=source,
        line=line,
        hint="expected bash's 2m50.467s, 0m0,011s or time -p's 0.01",
    )


def parse(text: str, source: str) -> list[TimingRecord]:
    records: list[TimingRecord] = []
    blocks: list[tuple[int, set[str]]] = []
    group: str | None = None
    block_start: int | None = None
    block_metrics: set[str] = set()

    bare: str | None = None     # a bare label waiting for the block it may head
    for i, line in enumerate(text.splitlines(), 1):
        m = _timing_value(line)
        if m is None:
            if block_start is not None:
                blocks.append((block_start, block_metrics))
                block_start, block_metrics = None, set()
            if (label := heading(line)) is not None:
                group, bare = label, None
            elif line.strip():
                bare = b["label"] if (b := _BARE_LABEL.match(line)) else None
            continue
        if bare is not None:
            group, bare = bare, None
        metric = m["metric"]
        seconds = _seconds(m["value"], source=source, line=i)
        if block_start is None or metric in block_metrics:
            if block_start is not None:
                blocks.append((block_start, block_metrics))
            block_start, block_metrics = i, set()
        block_metrics.add(metric)
        records.append(TimingRecord(source, i, group, 0, metric, seconds, format=NAME,
                                    extra={"_block": block_start}))
    if block_start is not None:
        blocks.append((block_start, block_metrics))

    if not records:
        raise RmaplabError("no bash `time` output found (lines such as 'real 0m1.234s')",
                           path=source)
    shapes = {frozenset(ms) for _, ms in blocks}
    if len(shapes) > 1:
        full = max(shapes, key=len)
        for start, ms in blocks:
            if frozenset(ms) != full:
                missing = ", ".join(x for x in METRICS if x in full and x not in ms)
                raise RmaplabError(
                    f"incomplete `time` block: {missing} missing while other blocks have "
                    f"{', '.join(x for x in METRICS if x in full)}",
                    path=source,
                    line=start,
                    hint="a truncated file or a line lost in copying",
                )
    return number_runs(records)
