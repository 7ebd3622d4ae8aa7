"""`rmaplab measure`'s own results: a measurement directory, or what ``--json`` printed.

A directory holds ``runs.csv`` (one row per run: label, order, warm-up flag, the
command's exit status, the tracepoint counts and real/user/sys); ``measure --json``
prints the same rows under ``"runs"`` (one command) or under each of ``"commands"``.
Every run gives real/user/sys and, when perf counted it, one record per allocation
counter (``anon_vma_alloc``, ``avc_alloc``, ``vma_alloc`` and the per-call-site counts):
``compare`` then tests an allocation A/B the way it tests times.  For those metrics the
``seconds`` field holds a count.  The group is the command's label; warm-ups are kept
as kind ``warmup`` (never compared); ``order`` is the run's position in the campaign,
so an interleaved campaign is seen as one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from rmaplab.errors import RmaplabError
from rmaplab.timings._schema import TimingRecord

NAME = "rmaplab-measure"
DESCRIPTION = ("a `rmaplab measure` directory (its runs.csv) or its --json output; the "
               "allocation counters are metrics too")
TIMES = ("real", "user", "sys")
# The counters of rmaplab.measure.perf, totals first (what `compare` offers by default).
COUNTERS = ("anon_vma_alloc", "avc_alloc", "vma_alloc", "anon_vma_fork", "anon_vma_prepare",
            "avc_fork", "avc_clone", "avc_prepare", "mm_forks", "forks", "execs")
DEFAULT_COUNTERS = ("anon_vma_alloc", "avc_alloc")


def sniff(text: str) -> int | None:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    return 1 if isinstance(obj, dict) and ("runs" in obj or "commands" in obj) \
        and _rows(obj) is not None else None


def _rows(obj: dict) -> list[dict] | None:
    groups = obj["commands"] if "commands" in obj else [obj]
    if not isinstance(groups, list):
        return None
    rows = []
    for g in groups:
        runs = g.get("runs") if isinstance(g, dict) else None
        if not isinstance(runs, list) or not all(isinstance(r, dict) and "order" in r
                                                 and "label" in r for r in runs):
            return None
        rows += runs
    return rows


def parse(text: str, source: str) -> list[TimingRecord]:
    """The JSON `rmaplab measure --json` printed."""
    try:
        rows = _rows(json.loads(text))
    except (json.JSONDecodeError, AttributeError):
        rows = None
    if rows is None:
        raise RmaplabError("not the JSON of `rmaplab measure --json`", path=source)
    if not rows:
        raise RmaplabError("no runs", path=source)
    return _records(rows, source, line_of=lambda i: 1)


def parse_dir(directory: Path) -> list[TimingRecord]:
    """A measurement directory; under data/raw/ its runs.csv is checked against the manifest."""
    from rmaplab import integrity
    from rmaplab.paths import raw_dir

    path = directory / "runs.csv"
    try:
        rel = path.resolve().relative_to(raw_dir().resolve())
    except ValueError:
        rel = None
    if rel is not None:
        path = integrity.raw_path(str(rel))
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RmaplabError("is a directory, not a timing file or a measurement (no runs.csv)",
                           path=directory) from None
    except UnicodeDecodeError:
        raise RmaplabError("not valid UTF-8", path=path) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise RmaplabError("no runs", path=path)
    if "label" not in rows[0]:
        raise RmaplabError("no label column (not the runs.csv of `rmaplab measure`)",
                           path=path, line=1)
    records = _records(rows, str(path), line_of=lambda i: i + 2)
    meta = path.parent / "metadata.json"
    if meta.exists():
        # Groups in the order the commands were given (A first), not the order they ran.
        labels = _condition_labels(meta)
        records.sort(key=lambda r: labels.index(r.group) if r.group in labels else len(labels))
    return records


def _condition_labels(meta: Path) -> list[str]:
    """The labels of metadata.json's conditions, in the order they were given."""
    try:
        obj = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise RmaplabError(f"not valid JSON ({e.msg})", path=meta, line=e.lineno) from None
    except UnicodeDecodeError:
        raise RmaplabError("not valid UTF-8", path=meta) from None
    conditions = obj.get("conditions", []) if isinstance(obj, dict) else None
    if not isinstance(conditions, list) or not all(
            isinstance(c, dict) and isinstance(c.get("label"), str) for c in conditions):
        raise RmaplabError("expected an object whose 'conditions' are objects with a label",
                           path=meta)
    return [c["label"] for c in conditions]


def _number(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1")


def _records(rows: list[dict], source: str, line_of) -> list[TimingRecord]:
    out = []
    seen: dict[int, int] = {}
    for i, row in enumerate(rows):
        warmup = _flag(row.get("warmup"))
        status = _number(row.get("exit_status"))
        order = _number(row.get("order"))
        if order is None:
            raise RmaplabError("a run without its order", path=source, line=line_of(i))
        if int(order) in seen:
            raise RmaplabError(f"order {int(order)} twice (also at line {seen[int(order)]})",
                               path=source, line=line_of(i))
        seen[int(order)] = line_of(i)
        extra = {"order": int(order), "exit_status": int(status) if status is not None else 0}
        if _flag(row.get("failed")) and not extra["exit_status"]:
            extra["exit_status"] = 1          # counted nothing usable: never compared
        for metric in (*TIMES, *COUNTERS):
            value = _number(row.get(metric))
            if value is None:
                if metric in TIMES:
                    raise RmaplabError(f"run {int(order)} has no {metric} time", path=source,
                                       line=line_of(i))
                if row.get(metric) not in (None, ""):
                    # Empty: perf did not count it.  Anything else would be dropped unseen.
                    raise RmaplabError(f"run {int(order)}: {metric} is {row[metric]!r}, not a "
                                       "count", path=source, line=line_of(i))
                continue
            out.append(TimingRecord(source=source, line=line_of(i), group=str(row["label"]),
                                    run=int(_number(row.get("run")) or 0), metric=metric,
                                    seconds=value, kind="warmup" if warmup else "run",
                                    format=NAME, extra=extra))
    return out
