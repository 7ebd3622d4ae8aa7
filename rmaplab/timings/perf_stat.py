"""``perf stat``: human output (single run, ``-r N``, ``-r N --table``), ``-x SEP`` CSV and ``-j``.

Human output: one block per ``Performance counter stats for '...'`` header.  A
single run gives ``seconds time elapsed``, ``seconds user`` and ``seconds sys``.
``-r N`` prints only the mean wall time and its standard error (perf's "+-" is
s/sqrt(n), not the SD) and no user/sys: that is kept as a ``mean`` record, which
the statistics refuse; ``--table`` adds the per-run wall times, read as runs.

CSV and JSON modes print no elapsed time: ask for the tool events
``-e duration_time,user_time,system_time`` (nanoseconds).  A repeated event starts a
new run.  With ``-r`` the CSV values are means (the variance field is the
relative standard error), read as ``mean`` records.  perf 6.1 prints
``<not counted>`` for a tool event whose count is zero (user_time of a command
that used no user CPU): that is read as 0 s and marked ``not_counted``.
"""

from __future__ import annotations

import json
import re

from rmaplab.errors import RmaplabError
from rmaplab.timings._schema import TimingRecord
from rmaplab.timings._text import heading, number, number_runs

NAME = "perf-stat"
DESCRIPTION = "perf stat human output (-r, --table), -x CSV and -j JSON with duration_time"

_HEADER = re.compile(r"^\s*Performance counter stats for '(?P<cmd>.*)'(?: \((?P<runs>\d+) runs\))?:\s*$")
_ELAPSED = re.compile(
    r"^\s*(?P<v>\d+(?:[.,]\d+)?)(?:\s+\+-\s+(?P<sem>\d+(?:[.,]\d+)?))?\s+seconds time elapsed\b"
)
_USERSYS = re.compile(r"^\s*(?P<v>\d+(?:[.,]\d+)?)\s+seconds (?P<which>user|sys)\s*$")
_TABLE_START = re.compile(r"^\s*# Table of individual measurements:\s*$")
_TABLE_ROW = re.compile(r"^\s*(?P<v>\d+(?:[.,]\d+)?) \((?P<dev>[+-]?\d+(?:[.,]\d+)?)\)\s*#*\s*$")
_TOOL_EVENTS = {"duration_time": "real", "user_time": "user", "system_time": "sys"}
_CSV_LINE = re.compile(
    r"^(?P<value>[^A-Za-z]*?\d|<not counted>|<not supported>)(?P<sep>[^\d.\s])(?P<unit>[^\d]*?)(?P=sep)(?P<event>[A-Za-z_][\w:.-]*)(?P=sep)"
)
# A line that names one of the tool events as a field (any separator).
_TOOL_EVENT_FIELD = re.compile(
    r"(?P<sep>[^\w\s.:-])(?P<event>duration_time|user_time|system_time)(?::\w+)?(?:(?P=sep)|$)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "msec": 1e-3, "ms": 1e-3, "s": 1.0}


def sniff(text: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if _HEADER.match(line):
            return i
        if '"counter-value"' in line:
            return i
        m = _CSV_LINE.match(line.strip())
        if m and m["event"] in _TOOL_EVENTS:
            return i
    return None


def parse(text: str, source: str) -> list[TimingRecord]:
    lines = text.splitlines()
    if any(_HEADER.match(line) for line in lines):
        return _parse_human(lines, source)
    if any('"counter-value"' in line for line in lines):
        return _parse_tool_events(_json_rows(lines, source), source, "json")
    return _parse_tool_events(_csv_rows(lines, source), source, "csv")


def _parse_human(lines: list[str], source: str) -> list[TimingRecord]:
    records: list[TimingRecord] = []
    group: str | None = None
    block: dict | None = None

    def flush() -> None:
        nonlocal block
        if block is None:
            return
        start, runs, cmd = block["start"], block["runs"], block["cmd"]
        if "real" not in block:
            raise RmaplabError("perf stat block has no 'seconds time elapsed' line",
                               path=source, line=start, hint="truncated output?")
        extra = {"command": cmd}
        if runs == 1:
            for metric in ("real", "user", "sys"):
                if metric in block:
                    value, line = block[metric]
                    records.append(TimingRecord(source, line, group, 0, metric, value,
                                                format=NAME, extra={**extra, "_block": start}))
        elif block["table"]:
            if len(block["table"]) != runs:
                raise RmaplabError(
                    f"perf stat --table lists {len(block['table'])} runs, header says {runs}",
                    path=source, line=start,
                )
            for value, line in block["table"]:
                records.append(TimingRecord(source, line, group, 0, "real", value,
                                            format=NAME, extra={**extra, "_block": line}))
        else:
            value, line = block["real"]
            records.append(TimingRecord(
                source, line, group, None, "real", value, kind="mean", n=runs, format=NAME,
                extra={**extra, "sem": block.get("sem")},
            ))
        block = None

    in_table = False
    for i, raw in enumerate(lines, 1):
        if m := _HEADER.match(raw):
            flush()
            block = {"start": i, "cmd": m["cmd"], "runs": int(m["runs"] or 1), "table": []}
            in_table = False
            continue
        if block is None:
            if (label := heading(raw)) is not None:
                group = label
            continue
        if _TABLE_START.match(raw):
            in_table = True
            continue
        if in_table and (m := _TABLE_ROW.match(raw)):
            block["table"].append((number(m["v"], source=source, line=i, what="run time"), i))
            continue
        if m := _ELAPSED.match(raw):
            in_table = False
            block["real"] = (number(m["v"], source=source, line=i, what="elapsed"), i)
            if m["sem"]:
                block["sem"] = number(m["sem"], source=source, line=i, what="+-")
            continue
        if m := _USERSYS.match(raw):
            block[m["which"]] = (number(m["v"], source=source, line=i, what=m["which"]), i)
            continue
    flush()
    if not records:
        raise RmaplabError("no perf stat report found", path=source)
    return number_runs(records)


def _csv_rows(lines: list[str], source: str) -> list[dict]:
    rows = []
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _CSV_LINE.match(line)
        if not m:
            # Another event's line, or one of ours whose value is not a count: skipping
            # that would shift every later run's times by one metric.
            named = _TOOL_EVENT_FIELD.search(line)
            if named:
                raise RmaplabError(f"perf stat CSV line for {named['event']} has no count "
                                   f"(value field {line.split(named['sep'])[0]!r})",
                                   path=source, line=i)
            continue
        fields = line.split(m["sep"])
        # With -r the 4th field is the relative standard error ("0.09%"), else the run time.
        variance = fields[3] if len(fields) > 3 and fields[3].endswith("%") else ""
        rows.append({"line": i, "value": m["value"], "unit": m["unit"], "event": m["event"],
                     "variance": variance})
    return rows


def _json_rows(lines: list[str], source: str) -> list[dict]:
    rows = []
    for i, raw in enumerate(lines, 1):
        if '"counter-value"' not in raw:
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise RmaplabError(f"perf stat -j line is not JSON ({e.msg})", path=source,
                               line=i) from None
        rows.append({"line": i, "value": obj.get("counter-value", ""), "unit": obj.get("unit", ""),
                     "event": obj.get("event", ""),
                     "variance": f"{obj['variance']}%" if "variance" in obj else ""})
    return rows


def _parse_tool_events(rows: list[dict], source: str, mode: str) -> list[TimingRecord]:
    records: list[TimingRecord] = []
    run_start: int | None = None
    seen: set[str] = set()
    for row in rows:
        event = row["event"].split(":")[0]
        metric = _TOOL_EVENTS.get(event)
        if metric is None:
            continue
        if run_start is None or event in seen:
            run_start, seen = row["line"], set()
        seen.add(event)
        unit = row["unit"]
        if unit not in _UNIT_SECONDS:
            raise RmaplabError(f"{event} has unit {unit!r}; expected ns", path=source,
                               line=row["line"])
        extra: dict = {"_block": run_start, "mode": mode}
        if row["value"] == "<not counted>" and metric != "real":
            value = 0.0
            extra["not_counted"] = True
        elif row["value"].startswith("<"):
            raise RmaplabError(f"perf reported {row['value']} for {event}", path=source,
                               line=row["line"])
        else:
            value = number(row["value"], source=source, line=row["line"], what=event)
        seconds = value * _UNIT_SECONDS[unit]
        if row["variance"].endswith("%"):
            records.append(TimingRecord(source, row["line"], None, None, metric, seconds,
                                        kind="mean", n=None, format=NAME,
                                        extra={"mode": mode, "rel_sem_pct": row["variance"]}))
        else:
            records.append(TimingRecord(source, row["line"], None, 0, metric, seconds,
                                        format=NAME, extra=extra))
    if not records:
        raise RmaplabError(
            "perf stat CSV/JSON output has no duration_time, user_time or system_time events",
            path=source, hint="record them with -e duration_time,user_time,system_time",
        )
    return number_runs(records)
