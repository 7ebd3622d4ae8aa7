"""Run commands under perf (or plainly) and record everything: counts, times, status, host.

A measurement directory (``data/raw/<kind>/<UTC start time>-<label>/``) is written
atomically at the end of a campaign and never overwritten; finished runs are staged
as they end, so an interrupted campaign resumes (:mod:`rmaplab.measure.staging`).
It holds ``metadata.json`` (host, conditions, counters, run order), ``runs.csv``
(one row per run: counts by call site, real/user/sys, whether perf was attached,
exit status, failed flag) and per-run ``run-NNN.perf.csv`` (perf's own output) and
``run-NNN.log.gz`` (the command's output).  An uninstrumented condition runs the
command without perf and takes real/user/sys from wait4() (what `time` reports), so
the cost of counting can be measured.  A run whose command fails is recorded as
failed, not dropped.  Campaigns interleave conditions in a seeded random order after
warm-up runs, so drift does not line up with a condition.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmaplab.errors import RmaplabError
from rmaplab.measure import host, perf, timed
from rmaplab.measure.staging import Staging
from rmaplab.paths import raw_dir


@dataclass
class Condition:
    label: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    before: list[str] | None = None      # run (unmeasured) before every run, e.g. make clean
    instrumented: bool = True            # False: no perf, wait4() rusage only (like `time`)


@dataclass
class Run:
    order: int
    label: str
    index: int            # run number within its condition; 0 for warm-ups
    warmup: bool
    exit_status: int
    failed: bool
    values: dict[str, float]
    wall_outside_perf: float
    loadavg_before: str | None
    problems: list[str]
    instrumented: bool = True

    def row(self) -> dict[str, Any]:
        row = {"order": self.order, "label": self.label, "run": self.index,
               "warmup": self.warmup, "instrumented": self.instrumented,
               "exit_status": self.exit_status, "failed": self.failed}
        row.update(self.values)
        if all(k in self.values for k in perf.COUNT_NAMES):
            row.update(perf.derived({k: int(self.values[k]) for k in perf.COUNT_NAMES}))
        row["wall_outside_perf"] = round(self.wall_outside_perf, 6)
        row["loadavg_before"] = self.loadavg_before
        row["problems"] = "; ".join(self.problems)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        """A run staged by an interrupted campaign, read back to resume it."""
        keys = (*perf.COUNT_NAMES, "real", "user", "sys")
        return cls(int(row["order"]), row["label"], int(row["run"]), bool(row["warmup"]),
                   int(row["exit_status"]), bool(row["failed"]),
                   {k: row[k] for k in keys if row.get(k) is not None},
                   float(row["wall_outside_perf"]), row["loadavg_before"],
                   [p for p in row["problems"].split("; ") if p], bool(row["instrumented"]))


def consistency(values: dict[str, float]) -> list[str]:
    """Identities the kernel guarantees; a violation means the counts are not trustworthy."""
    problems = []
    # anon_vma_fork() allocates its anon_vma and its own AVC together.
    if values["anon_vma_fork"] != values["avc_fork"]:
        problems.append(f"anon_vma_fork {values['anon_vma_fork']:g} != avc_fork "
                        f"{values['avc_fork']:g}")
    if values["mm_forks"] > values["forks"]:
        problems.append("more mm-copying forks than forks")
    return problems


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "run"


def _prepare(cond: Condition, env: dict[str, str]) -> None:
    if cond.before:
        prep = subprocess.run(cond.before, cwd=cond.cwd, env=env, capture_output=True)
        if prep.returncode != 0:
            raise RmaplabError(f"preparation {' '.join(cond.before)!r} failed with status "
                               f"{prep.returncode}: {prep.stderr.decode(errors='replace')[-300:]}")


def _loadavg() -> str | None:
    path = Path("/proc/loadavg")
    return path.read_text().strip() if path.exists() else None


def _plain(cond: Condition, env: dict[str, str]) -> tuple[dict[str, float], int, float, bytes]:
    import tempfile

    with tempfile.TemporaryFile() as out:
        result = timed.run(cond.cmd, cwd=cond.cwd, env=env, output=out)
        out.seek(0)
        output = out.read()
    values = {k: result[k] for k in ("real", "user", "sys")}
    return values, result["exit_status"], result["real"], output


def _one(cond: Condition, order: int, index: int, warmup: bool, tmp: Path,
         log: Callable[[str], None]) -> tuple[Run, dict[str, bytes]]:
    env = {**os.environ, **cond.env}
    _prepare(cond, env)
    loadavg = _loadavg()
    problems: list[str] = []
    files: dict[str, bytes] = {}
    if not cond.instrumented:
        values, status, wall, output = _plain(cond, env)
    else:
        perf_out = tmp / f"run-{order:03d}.perf.csv"
        start = time.perf_counter()
        try:
            proc = subprocess.run(perf.stat_argv(cond.cmd, perf_out), cwd=cond.cwd, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except FileNotFoundError as e:
            raise RmaplabError(f"cannot run {cond.cmd[0]!r}: {e.strerror}") from None
        wall = time.perf_counter() - start
        output, status = proc.stdout, proc.returncode
        perf_text = perf_out.read_text() if perf_out.exists() else ""
        values = {}
        if not perf_text.strip():
            tail = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RmaplabError(f"perf produced no counts ({tail[0]})",
                               hint=perf.diagnose(output.decode(errors="replace")))
        try:
            values = perf.parse(perf_text, str(perf_out))
            problems = consistency(values)
        except RmaplabError as e:
            problems.append(str(e))
        files[f"run-{order:03d}.perf.csv"] = perf_text.encode()
    files[f"run-{order:03d}.log.gz"] = gzip.compress(output, mtime=0)
    failed = status != 0 or not values
    run = Run(order, cond.label, index, warmup, status, failed, values, wall, loadavg,
              problems, cond.instrumented)
    what = "warm-up" if warmup else f"run {index}"
    state = ("FAILED" if failed else
             f"real {values.get('real', 0):.2f} s, sys {values.get('sys', 0):.2f} s")
    log(f"  [{order}] {cond.label} {what}: {state}" + (f" ({'; '.join(problems)})"
                                                        if problems else ""))
    return run, files


def _eta(done_s: list[float], remaining: int) -> str:
    if not done_s:
        return ""
    left = sum(done_s) / len(done_s) * remaining
    return f", about {left / 60:.0f} min left" if left >= 60 else f", about {left:.0f} s left"


def campaign(conditions: list[Condition], runs: int = 1, warmups: int = 0, seed: int = 0,
             label: str | None = None, out_root: Path | None = None, record: bool = True,
             log: Callable[[str], None] | None = None, extra_meta: dict | None = None
             ) -> tuple[list[Run], Path | None]:
    """Measure each condition ``runs`` times, interleaved in a seeded random order.

    With ``record``, every finished run is staged at once (:mod:`rmaplab.measure.staging`):
    an interrupted campaign resumes when the same command is run again, and the raw
    directory appears, complete, only at the end.
    """
    if runs < 1:
        raise RmaplabError("--runs must be at least 1")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if any(c.instrumented for c in conditions):
        perf.check()
    labels = [c.label for c in conditions]
    if len(set(labels)) != len(labels):
        raise RmaplabError("condition labels must be distinct")
    schedule = [(c, 0, True) for c in conditions for _ in range(warmups)]
    measured = [(c, i, False) for c in conditions for i in range(1, runs + 1)]
    random.Random(seed).shuffle(measured)
    schedule += measured
    out_root = out_root or raw_dir() / "measure"
    name = slug(label or conditions[0].label)
    conds = [{"label": c.label, "cmd": c.cmd, "env": c.env, "cwd": c.cwd, "before": c.before,
              "instrumented": c.instrumented} for c in conditions]
    order_names = [f"{c.label}#{i}" if not w else f"{c.label}#warmup" for c, i, w in schedule]
    meta = {
        "host": host.describe(),
        "conditions": conds,
        "runs_per_condition": runs, "warmups_per_condition": warmups, "seed": seed,
        "order": order_names,
        "counters": [{"name": c.name, "event": c.event, "filter": c.filter}
                     for c in perf.COUNTERS],
        "time_events": perf.TIME_EVENTS,
        "uninstrumented_timing": "wait4() rusage of the command (rmaplab.measure.timed), no perf",
        **(extra_meta or {}),
    }
    stage = (Staging("measure", name, {"conditions": conds, "order": order_names,
                                       "extra": extra_meta}, log) if record else None)
    results: list[Run] = []
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rmaplab-measure-") as scratch:
        durations: list[float] = []
        log(f"measuring {len(schedule)} run(s): " + ", ".join(labels))
        resumed_warm = False
        for order, (cond, index, warmup) in enumerate(schedule, 1):
            if stage is not None and stage.done(order):
                results.append(Run.from_row(stage.rows[order]))
                continue
            if stage is not None and stage.resumed and not resumed_warm and warmups:
                log(f"  resumed: one unrecorded warm-up of {cond.label} first")
                _one(cond, order, 0, True, Path(scratch), lambda s: None)
                resumed_warm = True
            start = time.perf_counter()
            run, files = _one(cond, order, index, warmup, Path(scratch), log)
            durations.append(time.perf_counter() - start)
            results.append(run)
            if stage is not None:
                stage.add(order, run.row(), files)
            pending = len(schedule) - order
            if pending and order % max(1, len(schedule) // 10) == 0:
                log(f"  {order}/{len(schedule)} done{_eta(durations, pending)}")
    if stage is None:
        return results, None
    target = stage.publish(out_root, meta)
    log(f"recorded in {target}")
    return results, target


def measure(cmd: list[str], runs: int = 1, **kw) -> tuple[list[Run], Path | None]:
    if not cmd:
        raise RmaplabError("no command given", hint="rmaplab measure -- CMD ARGS...")
    return campaign([Condition(kw.pop("label", None) or slug(" ".join(cmd)), cmd)], runs=runs,
                    **kw)


def summary(runs: list[Run]) -> dict[str, Any]:
    """The DESIGN.md measure --json object: medians over measured runs, plus every run."""
    import statistics

    good = [r for r in runs if not r.warmup and not r.failed]
    out: dict[str, Any] = {}
    if good:
        for key in perf.COUNT_NAMES:
            out[key] = int(statistics.median_low(r.values[key] for r in good))
        for key in ("real", "user", "sys"):
            out[key] = statistics.median(r.values[key] for r in good)
        out.update(perf.derived({k: int(out[k]) for k in perf.COUNT_NAMES}))
    out["runs"] = [r.row() for r in runs]
    out["failed_runs"] = sum(1 for r in runs if r.failed and not r.warmup)
    return out
