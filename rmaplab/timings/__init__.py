"""Timing loaders: one module per input format behind one registry.

Each format module has ``NAME``, ``DESCRIPTION``, ``sniff(text) -> line | None``
(the first line that shows the format) and ``parse(text, source) -> records``.
Adding a format is one module and one line in ``FORMATS``.  :func:`load` picks
the format (or takes the one given), refuses files that mix formats, and returns
records of one schema (:mod:`rmaplab.timings._schema`).  A ``rmaplab measure``
directory is read as such (:mod:`rmaplab.timings.rmaplab_measure`), and ``-`` is
standard input (e.g. ``rmaplab measure --json ... | rmaplab compare -``).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rmaplab.errors import RmaplabError
from rmaplab.timings import (
    bash_time,
    gnu_time,
    hyperfine,
    perf_stat,
    pyperf_json,
    rmaplab_measure,
)
from rmaplab.timings._schema import COLUMNS, METRICS, TimingRecord

if TYPE_CHECKING:
    import pandas as pd

# Sniffing order matters only for JSON, where the first match wins.
FORMATS = {m.NAME: m for m in (hyperfine, pyperf_json, rmaplab_measure, perf_stat, gnu_time,
                               bash_time)}
_TEXT_FORMATS = (perf_stat, gnu_time, bash_time)

__all__ = ["FORMATS", "METRICS", "TimingRecord", "detect", "load", "load_many", "to_frame"]


def read_text(path: str | Path) -> str:
    stdin = str(path) == "-"
    p = Path("standard input" if stdin else path)
    try:
        data = sys.stdin.buffer.read() if stdin else p.read_bytes()
    except FileNotFoundError:
        raise RmaplabError("no such file", path=p) from None
    except IsADirectoryError:
        raise RmaplabError("is a directory, not a timing file", path=p) from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise RmaplabError(f"truncated or corrupt gzip file ({e})", path=p) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RmaplabError(f"not UTF-8 text (byte {e.start})", path=p,
                           hint="is this a binary file?") from None
    if not text.strip():
        raise RmaplabError("empty file", path=p)
    return text


def detect(text: str, source: str) -> str:
    """Name of the one format in ``text``; an error if none or several are present."""
    stripped = text.lstrip()
    # perf stat -j writes one JSON object per line, not one JSON document.
    if (stripped.startswith("{") or stripped.startswith("[")) and '"counter-value"' not in text:
        for mod in (hyperfine, pyperf_json, rmaplab_measure):
            if mod.sniff(text):
                return mod.NAME
        raise RmaplabError("JSON, but neither hyperfine, pyperf nor rmaplab measure JSON",
                           path=source)
    hits = {m.NAME: line for m in _TEXT_FORMATS if (line := m.sniff(text)) is not None}
    # perf stat's footer ("seconds user") and GNU time -p / bash -p never collide with the
    # other sniffers' patterns; two hits therefore mean two tools' outputs in one file.
    if not hits:
        raise RmaplabError(
            "no timing output recognised",
            path=source,
            hint="supported: " + ", ".join(FORMATS) + " (see `rmaplab timings --help`)",
        )
    if len(hits) > 1:
        where = ", ".join(f"{name} at line {line}" for name, line in sorted(hits.items(),
                                                                           key=lambda kv: kv[1]))
        raise RmaplabError(f"mixed formats in one file ({where})", path=source,
                           hint="split the file, one tool's output per file")
    return next(iter(hits))


def load(path: str | Path, format: str = "auto", time_format: str | None = None
         ) -> list[TimingRecord]:
    """Parse one timing file (or measurement directory) into records (:class:`TimingRecord`)."""
    source = "standard input" if str(path) == "-" else str(path)
    if str(path) != "-" and Path(path).is_dir():
        if format not in ("auto", rmaplab_measure.NAME) or time_format is not None:
            raise RmaplabError("is a directory, not a timing file", path=path)
        return _checked(rmaplab_measure.parse_dir(Path(path)), source)
    text = read_text(path)
    if time_format is not None:
        if format not in ("auto", gnu_time.NAME):
            raise RmaplabError(f"--time-format applies to {gnu_time.NAME}, not {format}")
        return _checked(gnu_time.parse(text, source, time_format=time_format), source)
    name = detect(text, source) if format == "auto" else format
    if name not in FORMATS:
        raise RmaplabError(f"unknown format {name!r}", hint="one of: auto, " + ", ".join(FORMATS))
    try:
        records = FORMATS[name].parse(text, source)
    except OverflowError:                  # a JSON integer beyond any float: 10**400
        raise RmaplabError("holds a number too large to be a time", path=source) from None
    return _checked(records, source)


TIME_METRICS = ("real", "user", "sys")
TIME_MIN = 1e-12           # a picosecond: pyperf's fastest timings are nanoseconds
TIME_MAX = 1e7             # 116 days


def _checked(records: list[TimingRecord], source: str) -> list[TimingRecord]:
    """Refuse impossible times (NaN, infinite, negative) and give every run its order.

    ``order`` is the run's position in time as far as the file tells it: the line
    for the text formats (tools append their output as runs finish); the JSON
    formats set it themselves.
    """
    out = []
    for r in records:
        if not (math.isfinite(r.seconds) and r.seconds >= 0):
            raise RmaplabError(f"{r.metric} time {r.seconds!r} s is not a finite, non-negative "
                               "number", path=source, line=r.line or None)
        # Beyond these no clock measures, and the statistics' sums of squares overflow or
        # underflow (1e150 s: OverflowError; 1e-150 s: a variance of 0, ZeroDivisionError).
        # (Counts of `rmaplab measure`, also in `seconds`, are not times.)
        if r.metric in TIME_METRICS and not (r.seconds == 0 or TIME_MIN <= r.seconds <= TIME_MAX):
            raise RmaplabError(f"{r.metric} time {r.seconds!r} s is outside {TIME_MIN:g} s to "
                               f"{TIME_MAX:g} s (not a measured time)", path=source,
                               line=r.line or None)
        if r.kind == "run" and "order" not in r.extra:
            r = dataclasses.replace(r, extra={**r.extra, "order": r.line})
        out.append(r)
    return out


def load_many(paths: Iterable[str | Path], format: str = "auto",
              time_format: str | None = None) -> list[TimingRecord]:
    out: list[TimingRecord] = []
    for p in paths:
        out.extend(load(p, format=format, time_format=time_format))
    return out


def to_frame(records: Iterable[TimingRecord]) -> pd.DataFrame:
    """Records as a tidy DataFrame: the schema columns first, then any extras."""
    # Imported here: every `rmaplab` command builds its parser from FORMATS, and pandas
    # takes 0.4-0.6 s to import, which commands without timing files need not pay.
    import pandas as pd

    rows = [r.as_dict() for r in records]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    df["run"] = df["run"].astype("Int64")
    df["n"] = df["n"].astype("Int64")
    extras = [c for c in df.columns if c not in COLUMNS]
    return df[list(COLUMNS) + extras]
