"""Run commands under perf and record everything: counts, times, status, host.

A measurement directory (``data/raw/measure/<UTC time>-<label>/``) is written
atomically and never overwritten.  It holds ``metadata.json`` (host, command,
counters, run order), ``runs.csv`` (one row per run: counts by call site,
real/user/sys, exit status, failed flag) and per-run ``run-NNN.perf.csv`` (perf's
own output) and ``run-NNN.log.gz`` (the command's output).  A run whose command
fails is recorded as failed, not dropped.  Campaigns interleave conditions in a
seeded random order after warm-up runs, so drift does not line up with a condition.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rmaplab import atomic, integrity
from rmaplab.errors import RmaplabError
from rmaplab.measure import host, perf
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
    values: dict[str, float]
    wall_outside_perf: float
    loadavg_before: str | None
    problems: list[str]
    output: bytes = b""   # what the command printed (stdout and stderr), also in run-NNN.log.gz

    def row(self) -> dict[str, Any]:
        row = {"order": self.order, "label": self.label, "run": self.index,
               "warmup": self.warmup, "exit_status": self.exit_status, "failed": self.failed}
        row.update(self.values)
        if self.values:
            row.update(perf.derived({k: int(self.values[k]) for k in perf.COUNT_NAMES}))
        row["wall_outside_perf"] = round(self.wall_outside_perf, 6)
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


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "run"


def _one(cond: Condition, order: int, index: int, warmup: bool, tmp: Path,
         log: Callable[[str], None]) -> tuple[Run, bytes, bytes]:
    env = {**os.environ, **cond.env}
    if cond.before:
        prep = subprocess.run(cond.before, cwd=cond.cwd, env=env, capture_output=True)
        if prep.returncode != 0:
            raise RmaplabError(f"preparation {' '.join(cond.before)!r} failed with status "
                               f"{prep.returncode}: {prep.stderr.decode(errors='replace')[-300:]}")
    perf_out = tmp / f"run-{order:03d}.perf.csv"
    loadavg = Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else None
    start = time.perf_counter()
    try:
        proc = subprocess.run(perf.stat_argv(cond.cmd, perf_out), cwd=cond.cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError as e:
        raise RmaplabError(f"cannot run {cond.cmd[0]!r}: {e.strerror}") from None
    wall = time.perf_counter() - start
    output = proc.stdout
    perf_text = perf_out.read_text() if perf_out.exists() else ""
    problems: list[str] = []
    values: dict[str, float] = {}
    if not perf_text.strip():
        tail = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RmaplabError(f"perf produced no counts ({tail[0]})",
                           hint=perf.diagnose(output.decode(errors="replace")))
    try:
        values = perf.parse(perf_text, str(perf_out))
        problems = consistency(values)
    except RmaplabError as e:
        problems.append(str(e))
    failed = proc.returncode != 0 or not values
    run = Run(order, cond.label, index, warmup, proc.returncode, failed, values, wall, loadavg,
              problems, output)
    what = "warm-up" if warmup else f"run {index}"
    status = "FAILED" if failed else f"real {values.get('real', 0):.2f} s"
    log(f"  [{order}] {cond.label} {what}: {status}" + (f" ({'; '.join(problems)})"
                                                         if problems else ""))
    return run, perf_text.encode(), output


def campaign(conditions: list[Condition], runs: int = 1, warmups: int = 0, seed: int = 0,
             label: str | None = None, out_root: Path | None = None, record: bool = True,
             log: Callable[[str], None] | None = None, extra_meta: dict | None = None
             ) -> tuple[list[Run], Path | None]:
    """Measure each condition ``runs`` times, interleaved in a seeded random order."""
    if runs < 1:
        raise RmaplabError("--runs must be at least 1")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    perf.check()
    labels = [c.label for c in conditions]
    if len(set(labels)) != len(labels):
        raise RmaplabError("condition labels must be distinct")
    schedule = [(c, 0, True) for c in conditions for _ in range(warmups)]
    measured = [(c, i, False) for c in conditions for i in range(1, runs + 1)]
    random.Random(seed).shuffle(measured)
    schedule += measured
    out_root = out_root or raw_dir() / "measure"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{slug(label or conditions[0].label)}"
    meta = {
        "host": host.describe(),
        "conditions": [{"label": c.label, "cmd": c.cmd, "env": c.env, "cwd": c.cwd,
                        "before": c.before} for c in conditions],
        "runs_per_condition": runs, "warmups_per_condition": warmups, "seed": seed,
        "order": [f"{c.label}#{i}" if not w else f"{c.label}#warmup" for c, i, w in schedule],
        "counters": [{"name": c.name, "event": c.event, "filter": c.filter}
                     for c in perf.COUNTERS],
        "time_events": perf.TIME_EVENTS,
        **(extra_meta or {}),
    }
    results: list[Run] = []
    tmp_parent = Path(os.environ.get("TMPDIR", "/tmp"))
    import tempfile
    with tempfile.TemporaryDirectory(dir=tmp_parent, prefix="rmaplab-measure-") as scratch:
        scratch = Path(scratch)
        files: dict[str, bytes] = {}
        log(f"measuring {len(schedule)} run(s): " + ", ".join(labels))
        for order, (cond, index, warmup) in enumerate(schedule, 1):
            run, perf_bytes, output = _one(cond, order, index, warmup, scratch, log)
            results.append(run)
            files[f"run-{order:03d}.perf.csv"] = perf_bytes
            files[f"run-{order:03d}.log.gz"] = gzip.compress(output, mtime=0)
        if not record:
            return results, None
        target = out_root / name
        with atomic.new_directory(target) as d:
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
        try:
            target.relative_to(raw_dir())
        except ValueError:
            pass
        else:
            integrity.add([target])
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
