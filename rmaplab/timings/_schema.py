"""The one tidy schema every timing parser produces.

One :class:`TimingRecord` per run and metric.  ``metric`` is ``real`` (wall
clock), ``user`` or ``sys``.  ``kind`` is ``run`` for a single measured run and
``mean`` for a summary a tool printed instead of runs (``perf stat -r N`` without
``--table``, hyperfine's user/system means): summaries are kept, labelled, and
refused by the statistics, never mistaken for runs.

Extras every loader sets on runs: ``order`` (the run's position in time as far as
the file shows it, see :func:`rmaplab.timings.load`).  Where the tool records it,
``exit_status``: the statistics leave out runs whose status is not 0, and say so.
Times must be finite and non-negative; anything else is refused with its line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

METRICS = ("real", "user", "sys")
COLUMNS = ("source", "line", "group", "run", "metric", "seconds", "kind", "n", "format")


@dataclass(frozen=True, slots=True)
class TimingRecord:
    source: str
    line: int
    group: str | None
    run: int | None
    metric: str
    seconds: float
    kind: str = "run"
    n: int | None = 1
    format: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d
