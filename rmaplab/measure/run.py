"""Run commands under perf and record everything: counts, times, status, host.

A measurement directory (``data/raw/measure/<UTC time>-<label>/``, see
:mod:`rmaplab.measure.record`) is written atomically and never overwritten.  It holds
``metadata.json`` (host, command, counters, run order), ``runs.csv`` (one row per run:
counts by call site, real/user/sys, the command's own exit status, failed flag) and
per-run ``run-NNN.perf.csv`` (perf's own output) and ``run-NNN.log.gz`` (the command's
output).  A run whose command fails is recorded as failed, not dropped, and the
campaign's exit status (:func:`exit_status`) is the first failure's own.  Campaigns
interleave conditions in a seeded random order after warm-up runs, so drift does not
line up with a condition.  Everything is checked before the first run (the commands
exist, the destination is writable, perf counts); a campaign stopped half-way (Ctrl-C,
a failed preparation step) still records the runs it finished, marked incomplete.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmaplab.errors import RmaplabError
from rmaplab.measure import host, perf
from rmaplab.measure.record import (
    check_destination,
    deferred_interrupt,
    keep_unfinished,
    run_name,
    save,
    slug,
)
from rmaplab.paths import raw_dir


@dataclass
class Condition:
    label: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    before: list[str] | None = None      # run (unmeasured) before every run, e.g. make clean


@dataclass
class Run:
    order: int
    label: str
    index: int            # run number within its condition; 0 for warm-ups
    warmup: bool
    exit_status: int
    failed: bool
    values: dict[str, float]      # counts by call site (if perf counted) and real/user/sys
    loadavg_before: str | None
    problems: list[str]
    output: bytes = b""   # what the command printed (stdout and stderr), also in run-NNN.log.gz

    def row(self) -> dict[str, Any]:
        row = {"order": self.order, "label": self.label, "run": self.index,
               "warmup": self.warmup, "exit_status": self.exit_status, "failed": self.failed}
        row.update(self.values)
        if all(k in self.values for k in perf.COUNT_NAMES):
            row.update(perf.derived({k: int(self.values[k]) for k in perf.COUNT_NAMES}))
        row["loadavg_before"] = self.loadavg_before
        row["problems"] = "; ".join(self.problems)
        return row


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


def resolve_command(cmd: list[str], cwd: str | Path | None = None,
                    env: dict[str, str] | None = None) -> str:
    """The executable CMD would run, or a one-line error ("command not found: X")."""
    if not cmd:
        raise RmaplabError("no command given")
    name = cmd[0]
    if "/" in name:
        path = Path(cwd or ".") / name
        if not path.exists():
            raise RmaplabError(f"command not found: {name}")
        if path.is_dir() or not os.access(path, os.X_OK):
            raise RmaplabError(f"not an executable file: {name}")
        return str(path)
    found = shutil.which(name, path=(env or os.environ).get("PATH", os.defpath))
    if found is None:
        raise RmaplabError(f"command not found: {name}")
    return found


def shell_status(returncode: int) -> int:
    """A returncode as a shell reports it: the exit status, or 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


def exit_status(runs: list[Run]) -> int:
    """0 if every run's command succeeded, else the first failed command's own status
    (shell style: 128+N for signal N; 1 if it exited 0 but its counts were unusable)."""
    for r in runs:
        if r.failed:
            return shell_status(r.exit_status) or 1
    return 0


def status_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _one(cond: Condition, order: int, index: int, warmup: bool, tmp: Path
         ) -> tuple[Run, bytes, bytes]:
    env = {**os.environ, **cond.env}
    if cond.before:
        prep = subprocess.run(cond.before, cwd=cond.cwd, env=env, capture_output=True)
        if prep.returncode != 0:
            tail = prep.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RmaplabError(f"preparation {' '.join(cond.before)!r} failed with "
                               f"{status_text(prep.returncode)}: {tail[0]}")
    perf_out = tmp / f"run-{order:03d}.perf.csv"
    log_path = tmp / f"run-{order:03d}.log"
    loadavg = Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else None
    with open(log_path, "wb") as output:
        outcome = perf.run_counted(cond.cmd, perf_out, output, cwd=cond.cwd, env=env)
    perf_text = perf_out.read_text() if perf_out.exists() else ""
    problems: list[str] = []
    counts: dict[str, float] = {}
    try:
        counts = perf.parse(perf_text, str(perf_out))
        problems = consistency(counts)
    except RmaplabError as e:
        problems.append(str(e))
    failed = outcome.status != 0 or not counts
    if outcome.status != 0:
        problems.insert(0, status_text(outcome.status))
    values = {**counts, "real": outcome.real, "user": outcome.user, "sys": outcome.sys}
    output = log_path.read_bytes()
    run = Run(order, cond.label, index, warmup, outcome.status, failed, values, loadavg,
              problems, output)
    return run, perf_text.encode(), output


def _describe(run: Run) -> str:
    what = "warm-up" if run.warmup else f"run {run.index}"
    status = "FAILED" if run.failed else f"real {run.values['real']:.2f} s"
    return f"  [{run.order}] {run.label} {what}: {status}" + (
        f" ({'; '.join(run.problems)})" if run.problems else "")


def campaign(conditions: list[Condition], runs: int = 1, warmups: int = 0, seed: int = 0,
             label: str | None = None, out_root: Path | None = None, record: bool = True,
             log: Callable[[str], None] | None = None, extra_meta: dict | None = None
             ) -> tuple[list[Run], Path | None]:
    """Measure each condition ``runs`` times, interleaved in a seeded random order."""
    if runs < 1:
        raise RmaplabError(f"runs must be at least 1, got {runs}")
    if warmups < 0:
        raise RmaplabError(f"warm-ups must be 0 or more, got {warmups}")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    labels = [c.label for c in conditions]
    if len(set(labels)) != len(labels):
        raise RmaplabError("condition labels must be distinct")
    for c in conditions:
        env = {**os.environ, **c.env}
        if c.cwd is not None and not Path(c.cwd).is_dir():
            raise RmaplabError(f"no such directory: {c.cwd}")
        resolve_command(c.cmd, c.cwd, env)
        if c.before:
            resolve_command(c.before, c.cwd, env)
    out_root = out_root or raw_dir() / "measure"
    if record:
        check_destination(out_root)
    perf.check()
    schedule = [(c, 0, True) for c in conditions for _ in range(warmups)]
    measured = [(c, i, False) for c in conditions for i in range(1, runs + 1)]
    random.Random(seed).shuffle(measured)
    schedule += measured
    name = run_name(label or conditions[0].label)
    meta = {
        "host": host.describe(),
        "conditions": [{"label": c.label, "cmd": c.cmd, "env": c.env, "cwd": c.cwd,
                        "before": c.before} for c in conditions],
        "runs_per_condition": runs, "warmups_per_condition": warmups, "seed": seed,
        "order": [f"{c.label}#{i}" if not w else f"{c.label}#warmup" for c, i, w in schedule],
        "counters": [{"name": c.name, "event": c.event, "filter": c.filter}
                     for c in perf.COUNTERS],
        "counting": "perf stat -p attached to the command before its execve; real, user and "
                    "sys from the command's own wait4",
        **(extra_meta or {}),
    }
    results: list[Run] = []
    files: dict[str, bytes] = {}

    def write(d: Path) -> None:
        (d / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        for fname, data in files.items():
            (d / fname).write_bytes(data)
        buf = io.StringIO()
        rows = [r.row() for r in results]
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        (d / "runs.csv").write_text(buf.getvalue())

    with tempfile.TemporaryDirectory(prefix="rmaplab-measure-") as scratch:
        log(f"measuring {len(schedule)} run(s): " + ", ".join(labels))
        try:
            for order, (cond, index, warmup) in enumerate(schedule, 1):
                run, perf_bytes, output = _one(cond, order, index, warmup, Path(scratch))
                files[f"run-{order:03d}.perf.csv"] = perf_bytes
                files[f"run-{order:03d}.log.gz"] = gzip.compress(output, mtime=0)
                results.append(run)
                log(_describe(run))        # after it is kept: what is shown is recorded
        except (RmaplabError, KeyboardInterrupt) as e:
            if record and results:
                keep_unfinished(out_root, name, write, meta, len(results), len(schedule), e, log)
            raise
        if not record:
            return results, None
        with deferred_interrupt():
            target = save(out_root, name, write)
            log(f"recorded in {target}")
        return results, target


def measure(cmd: list[str], runs: int = 1, **kw) -> tuple[list[Run], Path | None]:
    if not cmd:
        raise RmaplabError("no command given", hint="rmaplab measure -- CMD ARGS...")
    return campaign([Condition(kw.pop("label", None) or slug(" ".join(cmd)), cmd)],
                    runs=runs, **kw)


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
    out["exit_status"] = exit_status(runs)
    return out
