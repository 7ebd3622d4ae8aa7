"""pyperf JSON (``.json`` or ``.json.gz``), e.g. from ``pyperf command -o FILE``.

``{"version": "1.0", "metadata": {...}, "benchmarks": [{"metadata": {"name",
"unit", "loops", ...}, "runs": [{"metadata": {...}, "warmups": [...], "values":
[...]}]}]}``.  Values are seconds per loop iteration (pyperf's own unit).  Each
value becomes a run of ``real`` (pyperf measures wall-clock time); the worker
process it came from is kept as ``process`` because values within one process are
correlated.  Calibration runs (no ``values``) are skipped: they hold no samples.
pyperf runs its worker processes one after another, so ``order`` numbers the
values in the file's order; ``line`` is the line of each value.
"""

from __future__ import annotations

from rmaplab.errors import RmaplabError
from rmaplab.timings._json import check_time, load_object, maybe_object, scalar_lines
from rmaplab.timings._schema import TimingRecord

NAME = "pyperf"
DESCRIPTION = "pyperf JSON, plain or gzipped (per-value wall times)"


def sniff(text: str) -> int | None:
    obj = maybe_object(text)
    return 1 if obj is not None and "benchmarks" in obj and "version" in obj else None


def parse(text: str, source: str) -> list[TimingRecord]:
    obj = load_object(text, source)
    if not isinstance(obj.get("benchmarks"), list):
        raise RmaplabError("pyperf JSON has no 'benchmarks' list", path=source)
    common = obj.get("metadata", {})
    lines = scalar_lines(text)
    records: list[TimingRecord] = []
    order = 0
    for b, bench in enumerate(obj["benchmarks"]):
        meta = {**common, **bench.get("metadata", {})}
        name = meta.get("name")
        unit = meta.get("unit", "second")
        if unit != "second":
            raise RmaplabError(
                f"benchmark {name!r} is in unit {unit!r}, not seconds",
                path=source, hint="a --track-memory file holds bytes, not times",
            )
        run_no = 0
        for p, run in enumerate(bench.get("runs", [])):
            values = run.get("values")
            if not values:
                continue
            for i, v in enumerate(values):
                line = lines.get(("benchmarks", b, "runs", p, "values", i), 0)
                seconds = check_time(v, source=source, line=line,
                                     where=f"benchmarks[{b}].runs[{p}].values[{i}]")
                run_no += 1
                order += 1
                records.append(TimingRecord(source, line, name, run_no, "real", seconds,
                                            format=NAME, extra={"process": p + 1, "order": order,
                                                                "command": meta.get("command")}))
    if not records:
        raise RmaplabError("pyperf JSON holds no values (only calibration runs?)", path=source)
    return records
