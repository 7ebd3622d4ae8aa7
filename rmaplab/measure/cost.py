"""What one anon_vma (with its AVCs) costs a fork, measured on this kernel.

``avwork forkcost K N STATE`` times N fork+_exit+waitpid of a process with K
one-page VMAs that either never had an anon_vma (STATE 0) or have one but no page
(STATE 1: written, then MADV_DONTNEED).  Both have the same VMAs and no pages to
copy, so the difference per VMA is what anon_vma_fork() adds at fork and
unlink_anon_vmas() at exit: one anon_vma, two anon_vma_chains, tree inserts and
removals, and the root lock.  Repetitions are interleaved in a seeded random order;
the per-VMA cost is the interaction coefficient of an OLS fit (statsmodels) of time
per fork on K, STATE and K x STATE, with a heteroskedasticity-robust CI.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd

from rmaplab.errors import RmaplabError
from rmaplab.measure import host, micro
from rmaplab.measure.record import (
    check_destination,
    deferred_interrupt,
    keep_unfinished,
    run_name,
    save,
)
from rmaplab.paths import raw_dir


def run(ks=(0, 32, 128), states=(0, 1), forks: int = 200, repeats: int = 30, seed: int = 0,
        record: bool = True, out_root: Path | None = None, log=None) -> tuple[pd.DataFrame,
                                                                               Path | None]:
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if len(set(ks)) < 2 or repeats < 2 or forks < 1:
        raise RmaplabError("forkcost needs two or more different K, repeats >= 2 and forks >= 1 "
                           "for the fit to be defined")
    out_root = out_root or raw_dir() / "cost"
    if record:
        check_destination(out_root)
    exe = str(micro.binary())
    schedule = [(k, s) for k in ks for s in states for _ in range(repeats)]
    random.Random(seed).shuffle(schedule)
    meta = {"host": host.describe(), "command": [exe, "forkcost", "K", str(forks), "STATE"],
            "ks": list(ks), "states": list(states), "forks": forks, "repeats": repeats,
            "seed": seed, "avwork_sha256": hashlib.sha256(micro.source()).hexdigest()}
    rows: list[dict] = []
    name = run_name("forkcost")

    def write(d: Path) -> None:
        (d / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        buf = io.StringIO()
        pd.DataFrame(rows).to_csv(buf, index=False)
        (d / "runs.csv").write_text(buf.getvalue())

    try:
        for i, (k, state) in enumerate(schedule, 1):
            proc = subprocess.run([exe, "forkcost", str(k), str(forks), str(state)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RmaplabError(f"avwork forkcost {k} {forks} {state} failed: "
                                   f"{proc.stderr.strip()}")
            ns, kk, n, st, ut_us, st_us = (int(x) for x in proc.stdout.split())
            rows.append({"order": i, "k": kk, "state": st, "forks": n, "ns": ns,
                         "ns_per_fork": ns / n, "utime_us": ut_us, "stime_us": st_us})
            if i % max(1, len(schedule) // 10) == 0:
                log(f"  forkcost {i}/{len(schedule)}")
    except (RmaplabError, KeyboardInterrupt) as e:
        if record and rows:
            keep_unfinished(out_root, name, write, meta, len(rows), len(schedule), e, log)
        raise
    df = pd.DataFrame(rows)
    if not record:
        return df, None
    with deferred_interrupt():
        where = save(out_root, name, write)
    return df, where


def per_anon_vma_cost(df: pd.DataFrame, level: float = 0.95) -> dict[str, float]:
    """Extra ns per fork for each VMA that has an anon_vma: OLS interaction term, HC3 CI."""
    import statsmodels.formula.api as smf

    fit = smf.ols("ns_per_fork ~ k * C(state)", data=df).fit(cov_type="HC3")
    term = next(t for t in fit.params.index if t.startswith("k:C(state)"))
    low, high = fit.conf_int(alpha=1 - level).loc[term]
    per_vma = next(t for t in fit.params.index if t == "k")
    return {"ns_per_anon_vma": float(fit.params[term]), "ci_low": float(low),
            "ci_high": float(high), "ns_per_vma": float(fit.params[per_vma]),
            "ns_fork_base": float(fit.params["Intercept"]), "n": int(len(df)),
            "r2": float(fit.rsquared)}


def fit_warnings(per: dict[str, float]) -> list[str]:
    """Why a :func:`per_anon_vma_cost` fit cannot mean what it claims, if it cannot: a cost
    that is not positive, or an interval that includes zero (too much noise for the runs)."""
    if per["ns_per_anon_vma"] <= 0 or per["ns_per_vma"] < 0:
        return [f"the fit is meaningless here: {per['ns_per_anon_vma']:.0f} ns per anon_vma, "
                f"{per['ns_per_vma']:.0f} ns per VMA (a cost cannot be negative); use more "
                "--forks and --repeats on a quiet machine"]
    if per["ci_low"] <= 0:
        return [f"the CI [{per['ci_low']:.0f}, {per['ci_high']:.0f}] ns includes zero: more "
                "--forks or --repeats are needed to tell the cost from noise"]
    return []
