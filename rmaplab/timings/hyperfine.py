"""hyperfine ``--export-json``: per-run wall times; user/system only as means.

``{"results": [{"command", "mean", "stddev", "median", "user", "system", "min",
"max", "times": [...], "exit_codes": [...], "parameters"?}]}``.  Each result is a
group named by its command (``--command-name`` if given).  ``times`` become runs of
``real``; hyperfine keeps no per-run user/system, so those are ``mean`` records.

Run order: hyperfine runs every run of one command before the next command, and
the file records no time stamps, so ``order`` numbers the runs in the file's order
(results in turn): a comparison of two commands is sequential, never interleaved.
Each run keeps its exit code (``exit_status``); ``line`` is the line of its time.
"""

from __future__ import annotations

from rmaplab.errors import RmaplabError
from rmaplab.timings._json import check_time, load_object, maybe_object, scalar_lines
from rmaplab.timings._schema import TimingRecord

NAME = "hyperfine"
DESCRIPTION = "hyperfine --export-json (per-run wall times; user/system means)"


def sniff(text: str) -> int | None:
    obj = maybe_object(text)
    return 1 if obj is not None and isinstance(obj.get("results"), list) else None


def parse(text: str, source: str) -> list[TimingRecord]:
    obj = load_object(text, source)
    results = obj.get("results")
    if not isinstance(results, list) or not results:
        raise RmaplabError("hyperfine JSON has no 'results' list", path=source)
    lines = scalar_lines(text)
    records: list[TimingRecord] = []
    order = 0
    for k, res in enumerate(results):
        where = f"results[{k}]"
        if not isinstance(res, dict) or "command" not in res or "times" not in res:
            raise RmaplabError(f"{where} lacks 'command' or 'times' (a CSV or old export?)",
                               path=source, hint="use hyperfine --export-json")
        times = res["times"]
        if not isinstance(times, list):
            raise RmaplabError(f"{where}.times is not a list of numbers", path=source,
                               line=lines.get(("results", k, "command")))
        exit_codes = res.get("exit_codes") or [None] * len(times)
        if len(exit_codes) != len(times):
            raise RmaplabError(f"{where} has {len(times)} times but {len(exit_codes)} exit codes",
                               path=source, line=lines.get(("results", k, "command")))
        group = str(res["command"])
        extra = {"command": group, "result": k}
        if res.get("parameters"):
            extra["parameters"] = res["parameters"]
        for i, (t, code) in enumerate(zip(times, exit_codes, strict=True)):
            line = lines.get(("results", k, "times", i), 0)
            seconds = check_time(t, source=source, line=line, where=f"{where}.times[{i}]")
            order += 1
            records.append(TimingRecord(source, line, group, i + 1, "real", seconds, format=NAME,
                                        extra={**extra, "exit_status": code, "order": order}))
        for metric, key in (("user", "user"), ("sys", "system")):
            if res.get(key) is not None:
                line = lines.get(("results", k, key), 0)
                seconds = check_time(res[key], source=source, line=line, where=f"{where}.{key}")
                records.append(TimingRecord(source, line, group, None, metric, seconds,
                                            kind="mean", n=len(times), format=NAME, extra=extra))
    return records
