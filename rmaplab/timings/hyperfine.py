"""hyperfine ``--export-json``: per-run wall times; user/system only as means.

``{"results": [{"command", "mean", "stddev", "median", "user", "system", "min",
"max", "times": [...], "exit_codes": [...], "parameters"?}]}``.  Each result is a
group named by its command (``--command-name`` if given).  ``times`` become runs of
``real``; hyperfine keeps no per-run user/system, so those are ``mean`` records.
"""

from __future__ import annotations

from rmaplab.errors import RmaplabError
from rmaplab.timings._json import load_object, maybe_object
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
    records: list[TimingRecord] = []
    for k, res in enumerate(results):
        where = f"results[{k}]"
        if not isinstance(res, dict) or "command" not in res or "times" not in res:
            raise RmaplabError(f"{where} lacks 'command' or 'times' (a CSV or old export?)",
                               path=source, hint="use hyperfine --export-json")
        times = res["times"]
        if not isinstance(times, list) or not all(isinstance(t, (int, float)) for t in times):
            raise RmaplabError(f"{where}.times is not a list of numbers", path=source)
        exit_codes = res.get("exit_codes") or [None] * len(times)
        group = str(res["command"])
        extra = {"command": group, "result": k}
        if res.get("parameters"):
            extra["parameters"] = res["parameters"]
        for run, (t, code) in enumerate(zip(times, exit_codes, strict=False), 1):
            records.append(TimingRecord(source, 0, group, run, "real", float(t), format=NAME,
                                        extra={**extra, "exit_status": code}))
        for metric, key in (("user", "user"), ("sys", "system")):
            if isinstance(res.get(key), (int, float)):
                records.append(TimingRecord(source, 0, group, None, metric, float(res[key]),
                                            kind="mean", n=len(times), format=NAME, extra=extra))
    return records
