"""GNU ``/usr/bin/time``: the default two-line report, ``-v``, and ``-f FORMAT``.

Default (``%Uuser %Ssystem %Eelapsed %PCPU (...)k`` then an I/O line); ``%E`` is
``M:SS.cc`` below an hour and ``H:MM:SS`` from one hour.  A preceding ``Command
exited with non-zero status N`` / ``Command terminated by signal N`` line is kept
as the run's exit status.  ``-v`` prints ``Key: value`` lines per run.  ``-p`` is
the POSIX layout, read by the bash-time parser.

``-f FORMAT`` cannot be detected: pass the format (``--time-format '%e %U %S'``).
Supported specifiers: %e %E (elapsed), %U %S (user, system), %M (max RSS, KiB),
%x (exit status), %P (CPU percent), %C (command), %%.  With a custom format every
non-blank line must be a report, a heading or a ``Command exited`` line.
"""

from __future__ import annotations

import re

from rmaplab.errors import RmaplabError
from rmaplab.timings._schema import TimingRecord
from rmaplab.timings._text import clock, heading, number, number_runs

NAME = "gnu-time"
DESCRIPTION = "GNU /usr/bin/time: default format, -v, -f FORMAT (with --time-format)"

_DEFAULT = re.compile(
    r"^(?P<user>\d+(?:\.\d+)?)user\s+(?P<sys>\d+(?:\.\d+)?)system\s+"
    r"(?P<elapsed>[\d:.]+)elapsed\s+(?P<cpu>\S+)CPU\b"
    r"(?:\s*\((?P<text>\d+)avgtext\+(?P<data>\d+)avgdata\s+(?P<maxrss>\d+)maxresident\)k)?\s*$"
)
_LOOKS_DEFAULT = re.compile(r"\buser\b.*\bsystem\b.*\belapsed\b|\duser\s|\dsystem\s")
_IO_LINE = re.compile(r"^\d+inputs\+\d+outputs \(\d+major\+\d+minor\)pagefaults \d+swaps\s*$")
_STATUS = re.compile(r"^Command (?:exited with non-zero status|terminated by signal|stopped by signal) (?P<n>-?\d+)\s*$")
_VERBOSE_START = re.compile(r'^\s*Command being timed: "(?P<cmd>.*)"\s*$')
_VERBOSE_KV = re.compile(r"^\s+(?P<key>.+?): (?P<value>\S.*?)\s*$")


def sniff(text: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if _DEFAULT.match(line.strip()) or _VERBOSE_START.match(line):
            return i
    return None


def parse(text: str, source: str, time_format: str | None = None) -> list[TimingRecord]:
    if time_format is not None:
        return _parse_custom(text, source, time_format)
    if any(_VERBOSE_START.match(line) for line in text.splitlines()):
        return _parse_verbose(text, source)
    return _parse_default(text, source)


def _records(source: str, line: int, group: str | None, values: dict[str, float],
             extra: dict) -> list[TimingRecord]:
    return [
        TimingRecord(source, line, group, 0, metric, values[metric], format=NAME,
                     extra={**extra, "_block": line})
        for metric in ("real", "user", "sys")
        if metric in values
    ]


def _parse_default(text: str, source: str) -> list[TimingRecord]:
    records: list[TimingRecord] = []
    group: str | None = None
    status: int | None = None
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := _STATUS.match(line):
            status = int(m["n"])
            continue
        if m := _DEFAULT.match(line):
            values = {
                "user": number(m["user"], source=source, line=i, what="user"),
                "sys": number(m["sys"], source=source, line=i, what="system"),
                "real": clock(m["elapsed"], source=source, line=i),
            }
            extra = {"exit_status": status if status is not None else 0}
            if m["maxrss"]:
                extra["maxrss_kb"] = int(m["maxrss"])
            records += _records(source, i, group, values, extra)
            status = None
            continue
        if _IO_LINE.match(line):
            continue
        if _LOOKS_DEFAULT.search(line) and "elapsed" in line:
            raise RmaplabError(f"malformed GNU time line {line!r}", path=source, line=i,
                               hint="expected '0.00user 0.00system 0:00.01elapsed 9%CPU ...'")
        if (label := heading(raw)) is not None:
            group = label
    if not records:
        raise RmaplabError("no GNU time report found", path=source)
    return number_runs(records)


# Keys with their parenthesised units removed ("Elapsed (wall clock) time (h:mm:ss or m:ss)").
_VERBOSE_KEYS = {"User time": "user", "System time": "sys", "Elapsed time": "real"}


def _parse_verbose(text: str, source: str) -> list[TimingRecord]:
    records: list[TimingRecord] = []
    group: str | None = None
    start: int | None = None
    values: dict[str, float] = {}
    extra: dict = {}

    def flush(end_line: int) -> None:
        nonlocal start, values, extra
        if start is None:
            return
        missing = [k for k in ("real", "user", "sys") if k not in values]
        if missing:
            raise RmaplabError(
                f"GNU time -v report starting here lacks {', '.join(missing)}",
                path=source, line=start, hint="truncated file?",
            )
        records.extend(_records(source, start, group, values, extra))
        start, values, extra = None, {}, {}

    for i, raw in enumerate(text.splitlines(), 1):
        if m := _VERBOSE_START.match(raw):
            flush(i)
            start, values, extra = i, {}, {"command": m["cmd"]}
            continue
        if start is not None and (m := _VERBOSE_KV.match(raw)):
            key = re.sub(r"\s*\([^)]*\)", "", m["key"]).strip()
            metric = _VERBOSE_KEYS.get(key)
            value = m["value"]
            if metric == "real":
                values["real"] = clock(value, source=source, line=i)
            elif metric:
                values[metric] = number(value, source=source, line=i, what=key)
            elif key == "Maximum resident set size":
                extra["maxrss_kb"] = int(value)
            elif key == "Exit status":
                extra["exit_status"] = int(value)
            continue
        if raw.strip() and _STATUS.match(raw.strip()):
            continue
        if start is not None and raw.strip():
            flush(i)
        if (label := heading(raw)) is not None:
            group = label
    flush(0)
    if not records:
        raise RmaplabError("no GNU time -v report found", path=source)
    return number_runs(records)


_SPECIFIERS = {
    "e": (r"(?P<e>\d+(?:\.\d+)?)", "real"),
    "E": (r"(?P<E>\d+(?::\d+){1,2}(?:\.\d+)?)", "real"),
    "U": (r"(?P<U>\d+(?:\.\d+)?)", "user"),
    "S": (r"(?P<S>\d+(?:\.\d+)?)", "sys"),
    "M": (r"(?P<M>\d+)", None),
    "x": (r"(?P<x>-?\d+)", None),
    "P": (r"(?P<P>\?|\d+)%?", None),
    "C": (r"(?P<C>.*?)", None),
}


def format_regex(time_format: str) -> re.Pattern[str]:
    """Turn a GNU time -f format into a regex with one named group per specifier."""
    out, i, seen = [], 0, set()
    while i < len(time_format):
        ch = time_format[i]
        if ch == "%":
            if i + 1 >= len(time_format):
                raise RmaplabError(f"time format {time_format!r} ends with a lone '%'")
            spec = time_format[i + 1]
            if spec == "%":
                out.append("%")
            elif spec in _SPECIFIERS:
                if spec in seen:
                    raise RmaplabError(f"time format {time_format!r} repeats %{spec}")
                seen.add(spec)
                out.append(_SPECIFIERS[spec][0])
            else:
                raise RmaplabError(
                    f"time format specifier %{spec} is not supported",
                    hint="supported: " + " ".join("%" + k for k in _SPECIFIERS) + " %%",
                )
            i += 2
            continue
        if ch == "\\" and i + 1 < len(time_format) and time_format[i + 1] in "nt":
            out.append(r"\s+")
            i += 2
            continue
        out.append(r"\s+" if ch.isspace() else re.escape(ch))
        i += 1
    if not seen & {"e", "E", "U", "S"}:
        raise RmaplabError(f"time format {time_format!r} has no time specifier (%e %E %U %S)")
    if "e" in seen and "E" in seen:
        raise RmaplabError(f"time format {time_format!r} has both %e and %E")
    return re.compile(r"^\s*" + "".join(out) + r"\s*$")


def _parse_custom(text: str, source: str, time_format: str) -> list[TimingRecord]:
    regex = format_regex(time_format)
    records: list[TimingRecord] = []
    group: str | None = None
    status: int | None = None
    for i, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        if m := _STATUS.match(raw.strip()):
            status = int(m["n"])
            continue
        if m := regex.match(raw):
            values: dict[str, float] = {}
            for spec, (_, metric) in _SPECIFIERS.items():
                if metric is None or m.groupdict().get(spec) is None:
                    continue
                if spec == "E":
                    values[metric] = clock(m[spec], source=source, line=i)
                else:
                    values[metric] = number(m[spec], source=source, line=i, what="%" + spec)
            extra: dict = {"exit_status": status if status is not None else 0}
            if m.groupdict().get("x") is not None:
                extra["exit_status"] = int(m["x"])
            if m.groupdict().get("M") is not None:
                extra["maxrss_kb"] = int(m["M"])
            if m.groupdict().get("C") is not None:
                extra["command"] = m["C"]
            records += _records(source, i, group, values, extra)
            status = None
            continue
        if (label := heading(raw)) is not None:
            group = label
            continue
        raise RmaplabError(
            f"line does not match time format {time_format!r}: {raw.strip()!r}",
            path=source, line=i,
        )
    if not records:
        raise RmaplabError(f"no line matches time format {time_format!r}", path=source)
    return number_runs(records)
