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


# ---------------------------------------------------------------------------------------
# anon_vma and anon_vma_chain priced separately (avwork forkdepth / teardown)
#
# ``avwork forkdepth LAYOUT K N STATE D ANCESTORS`` varies, per timed fork, the number of
# anon_vmas allocated (A), of anon_vma_chains allocated (C) and of VMAs that have an
# anon_vma (W) independently: K VMAs without (STATE 0) or with an anon_vma (STATE 1),
# chains of depth D (each fork allocates D+1 AVCs per VMA), and ancestors that stay alive
# (a new anon_vma per VMA) or exited (anon_vma_clone reuses one: A = 0, W = K).  A and C
# are not derived by hand: each condition is first counted with perf stat (N forks and 0
# forks), and the per-fork difference of anon_vma_fork and avc_fork + avc_clone
# allocations is the regressor.  Every page was read before, so page tables exist in
# both states; what W still carries is copy_page_range's walk of a VMA with an anon_vma.

def objects_conditions(layouts=("sep", "split"), ks=(0, 32, 128), states=(0, 1),
                       alive_depths=(1, 2, 3, 4), exited_depths=(3, 4)) -> list[dict]:
    """The forkdepth grid; K = 0 once per depth mode (layout and state do not matter)."""
    modes = [(d, "alive") for d in alive_depths] + [(d, "exited") for d in exited_depths]
    out = []
    for d, anc in modes:
        out.append({"layout": "sep", "k": 0, "state": 1, "depth": d, "ancestors": anc})
        for layout in layouts:
            for k in ks:
                if k == 0:
                    continue
                for state in states:
                    out.append({"layout": layout, "k": k, "state": state, "depth": d,
                                "ancestors": anc})
    return out


def teardown_conditions(layouts=("sep", "split"), k: int = 128, states=(0, 1)) -> list[dict]:
    out = []
    for concurrent in (0, 1):
        out.append({"layout": "sep", "k": 0, "state": 1, "concurrent": concurrent})
        for layout in layouts:
            for state in states:
                out.append({"layout": layout, "k": k, "state": state, "concurrent": concurrent})
    return out


def _forkdepth_argv(exe: str, c: dict, forks: int) -> list[str]:
    return [exe, "forkdepth", c["layout"], str(c["k"]), str(forks), str(c["state"]),
            str(c["depth"]), c["ancestors"]]


def _teardown_argv(exe: str, c: dict, children: int) -> list[str]:
    return [exe, "teardown", c["layout"], str(c["k"]), str(children), str(c["state"]),
            str(c["concurrent"])]


def count_condition(exe: str, c: dict, forks: int, tmp: Path) -> tuple[dict, dict[str, bytes]]:
    """Per-fork allocations of one forkdepth condition: perf stat at N forks minus at 0."""
    from rmaplab.measure import perf

    values, files = {}, {}
    for n in (forks, 0):
        out = tmp / "count.csv"
        with open(tmp / "count.log", "wb") as log:
            outcome = perf.run_counted(_forkdepth_argv(exe, c, n), out, log)
        if outcome.status != 0:
            tail = (tmp / "count.log").read_text(errors="replace").strip()[-300:]
            raise RmaplabError(f"counting avwork forkdepth failed (status {outcome.status}): "
                               f"{tail}")
        text = out.read_text()
        values[n] = perf.parse(text, str(out))
        files[f"count-{_slug(c)}-n{n}.perf.csv"] = text.encode()
    per = {key: (values[forks][key] - values[0][key]) / forks
           for key in ("anon_vma_fork", "avc_fork", "avc_clone", "vma_alloc", "mm_forks")}
    return {**c, "forks": forks, "anon_vmas": per["anon_vma_fork"],
            "avcs": per["avc_fork"] + per["avc_clone"], "vmas": per["vma_alloc"],
            "mm_forks": per["mm_forks"]}, files


def _slug(c: dict) -> str:
    return "-".join(str(c[k]) for k in ("layout", "k", "state", "depth", "ancestors"))


def _parse_line(line: str) -> dict[str, int]:
    ns, k, n, state, x, ut, st = (int(v) for v in line.split())
    return {"ns": ns, "n": n, "cpu_us": ut + st, "utime_us": ut, "stime_us": st}


def objects_campaign(forks: int = 500, repeats: int = 20, children: int = 16,
                     teardown_repeats: int = 40, seed: int = 0, record: bool = True,
                     out_root: Path | None = None, label: str = "objects",
                     conditions: list[dict] | None = None, teardown: list[dict] | None = None,
                     log=None) -> tuple[pd.DataFrame, pd.DataFrame, Path | None]:
    """Count every forkdepth condition, then time forkdepth and teardown runs, interleaved."""
    import tempfile

    from rmaplab.measure.staging import Staging

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    exe = str(micro.binary())
    conds = objects_conditions() if conditions is None else conditions
    tears = teardown_conditions() if teardown is None else teardown
    schedule = ([("fork", c) for c in conds for _ in range(repeats)]
                + [("teardown", c) for c in tears for _ in range(teardown_repeats)])
    random.Random(seed).shuffle(schedule)
    config = {"forks": forks, "children": children, "seed": seed,
              "schedule": [[kind, c] for kind, c in schedule]}
    out_root = out_root or raw_dir() / "objects"
    if record:
        check_destination(out_root)
    stage = Staging("cost", label, config, log) if record else None
    files: dict[str, bytes] = {}
    counted = []
    with tempfile.TemporaryDirectory(prefix="rmaplab-cost-") as tmp:
        log(f"counting {len(conds)} forkdepth conditions with perf stat ...")
        for c in conds:
            row, f = count_condition(exe, c, forks, Path(tmp))
            counted.append(row)
            files.update(f)
    counts = pd.DataFrame(counted)
    rows = []
    log(f"timing {len(schedule)} runs ...")
    try:
        for order, (kind, c) in enumerate(schedule, 1):
            if stage is not None and stage.done(order):
                rows.append(stage.rows[order])
                continue
            argv = (_forkdepth_argv(exe, c, forks) if kind == "fork"
                    else _teardown_argv(exe, c, children))
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RmaplabError(f"{' '.join(argv[1:])} failed: {proc.stderr.strip()[-300:]}")
            row = {"order": order, "design": kind, **c, **_parse_line(proc.stdout)}
            rows.append(row)
            if stage is not None:
                with deferred_interrupt():
                    stage.add(order, row, {})
            if order % max(1, len(schedule) // 10) == 0:
                log(f"  {order}/{len(schedule)}")
    except (RmaplabError, KeyboardInterrupt):
        if stage is not None and rows:
            log(f"{len(rows)} finished run(s) stay staged in {stage.dir}: "
                "the same command resumes the campaign")
        raise
    runs = pd.DataFrame(rows)
    where = None
    if stage is not None:
        buf = io.StringIO()
        counts.to_csv(buf, index=False)
        meta = {"host": host.describe(), "avwork_sha256": hashlib.sha256(micro.source()).hexdigest(),
                "command": "avwork forkdepth LAYOUT K N STATE D ANCESTORS / avwork teardown "
                           "LAYOUT K M STATE CONCURRENT", **config}
        extra = {"counts.csv": buf.getvalue(),
                 **{name: data.decode() for name, data in files.items()}}
        with deferred_interrupt():
            where = stage.publish(out_root, meta, extra)
        log(f"recorded in {where}")
    return runs, counts, where


def load_objects(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """runs.csv and counts.csv of an objects campaign (checked against the manifest)."""
    from rmaplab.measure.data import read_recorded

    return (pd.read_csv(io.BytesIO(read_recorded(directory / "runs.csv"))),
            pd.read_csv(io.BytesIO(read_recorded(directory / "counts.csv"))))


KEYS = ["layout", "k", "state", "depth", "ancestors"]


def fork_frame(runs: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """Timed forkdepth runs with their condition's measured per-fork allocations."""
    fk = runs[runs["design"] == "fork"].copy()
    fk["depth"] = fk["depth"].astype(int)
    fk = fk.merge(counts[[*KEYS, "anon_vmas", "avcs", "vmas"]], on=KEYS, how="left")
    if fk["anon_vmas"].isna().any():
        raise RmaplabError("a timed condition has no counting run")
    fk["cpu_ns_per_fork"] = fk["cpu_us"] * 1000 / fk["n"]
    fk["wall_ns_per_fork"] = fk["ns"] / fk["n"]
    fk["with_anon_vma"] = fk["k"] * (fk["state"] >= 1)
    fk["group"] = fk["depth"].astype(str) + "-" + fk["ancestors"]
    return fk


def object_costs(runs: pd.DataFrame, counts: pd.DataFrame, y: str = "cpu_ns_per_fork",
                 level: float = 0.95):
    """OLS (statsmodels, HC3) of time per fork on the allocations it makes.

    ``time = group + a * anon_vmas + c * avcs + w * VMAs with an anon_vma + v * VMAs``,
    ``group`` a fixed effect per chain depth and ancestor mode.  Returns the fit;
    :func:`coefficients` tabulates it.
    """
    import statsmodels.formula.api as smf

    fk = fork_frame(runs, counts)
    return smf.ols(f"{y} ~ C(group) + anon_vmas + avcs + with_anon_vma + vmas",
                   data=fk).fit(cov_type="HC3")


def coefficients(fit, level: float = 0.95) -> pd.DataFrame:
    names = {"anon_vmas": "per anon_vma", "avcs": "per anon_vma_chain",
             "with_anon_vma": "per VMA with an anon_vma", "vmas": "per VMA"}
    ci = fit.conf_int(alpha=1 - level)
    return pd.DataFrame([{"term": names[t], "ns": float(fit.params[t]),
                          "ci_low": float(ci.loc[t, 0]), "ci_high": float(ci.loc[t, 1]),
                          "se": float(fit.bse[t])} for t in names])


def price_warnings(coef: pd.DataFrame) -> list[str]:
    """Why a :func:`coefficients` table cannot mean what it claims, price by price: a
    price below zero (a cost cannot be negative) or an interval that includes zero."""
    out = []
    for _, c in coef.iterrows():
        if c["ns"] < 0:
            out.append(f"{c['term']}: {c['ns']:.0f} ns is meaningless (a cost cannot be "
                       "negative); more --forks and --repeats on a quiet machine")
        elif c["ci_low"] <= 0:
            out.append(f"{c['term']}: the CI [{c['ci_low']:.0f}, {c['ci_high']:.0f}] ns "
                       "includes zero: more --forks or --repeats are needed")
    return out


def saved_time(fit, saved_anon_vmas: float, saved_avcs: float, level: float = 0.95
               ) -> dict[str, float]:
    """Seconds that saved allocations are worth: a*A + c*C with its CI (linear contrast)."""
    import numpy as np

    names = list(fit.params.index)
    contrast = np.zeros(len(names))
    contrast[names.index("anon_vmas")] = saved_anon_vmas
    contrast[names.index("avcs")] = saved_avcs
    test = fit.t_test(contrast)
    low, high = test.conf_int(alpha=1 - level)[0]
    return {"seconds": float(test.effect[0]) * 1e-9, "ci_low_s": float(low) * 1e-9,
            "ci_high_s": float(high) * 1e-9}


def teardown_effect(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Teardown CPU per VMA with an anon_vma when children exit together vs one at a time.

    OLS of the children's CPU per child on (VMAs with an anon_vma) x (concurrent), per
    layout; the ratio concurrent/sequential gets a delta-method CI.
    """
    import numpy as np
    import statsmodels.formula.api as smf
    from scipy import stats

    td = runs[runs["design"] == "teardown"].copy()
    td["cpu_ns_per_child"] = td["cpu_us"] * 1000 / td["n"]
    td["wall_ns_per_child"] = td["ns"] / td["n"]
    td["with_anon_vma"] = td["k"] * (td["state"] >= 1)
    z = stats.norm.ppf(0.5 + level / 2)
    rows = []
    for layout in sorted(set(td.loc[td["k"] > 0, "layout"])):
        sub = td[(td["layout"] == layout) | (td["k"] == 0)]
        fit = smf.ols("cpu_ns_per_child ~ C(concurrent) * with_anon_vma", data=sub
                      ).fit(cov_type="HC3")
        seq = fit.params["with_anon_vma"]
        inter = next(t for t in fit.params.index if ":" in t)
        conc = seq + fit.params[inter]
        cov = fit.cov_params()
        var_seq = cov.loc["with_anon_vma", "with_anon_vma"]
        var_conc = (var_seq + cov.loc[inter, inter] + 2 * cov.loc["with_anon_vma", inter])
        cov_sc = var_seq + cov.loc["with_anon_vma", inter]
        ratio = conc / seq
        # delta method for conc/seq
        var_ratio = (var_conc / seq**2 + conc**2 * var_seq / seq**4 - 2 * conc * cov_sc / seq**3)
        half = z * np.sqrt(var_ratio)
        rows.append({"layout": layout, "sequential_ns": seq,
                     "sequential_se": np.sqrt(var_seq), "concurrent_ns": conc,
                     "concurrent_se": np.sqrt(var_conc), "ratio": ratio,
                     "ratio_ci_low": ratio - half, "ratio_ci_high": ratio + half,
                     "n": int(len(sub))})
    return pd.DataFrame(rows)


def break_even(fit, saved: pd.DataFrame, sys_s: dict[str, float], claim_pct: float,
               contention: float = 1.0, level: float = 0.95) -> pd.DataFrame:
    """The cost per saved object that would explain the claimed sys change, against the
    measured one.

    ``saved``: rows (shell, patch, anon_vmas, avcs) of allocations a policy saves;
    ``sys_s``: this machine's build sys time per shell (uninstrumented when available);
    ``claim_pct``: the claimed sys change in percent; ``contention``: a factor (>= 1)
    applied to the measured costs for teardown under a contended root lock.  The
    break-even factor is claimed seconds / measured seconds: how many times more each
    saved object would have to cost.
    """
    rows = []
    for _, s in saved.iterrows():
        claim_s = abs(claim_pct) / 100 * sys_s[s["shell"]]
        worth = saved_time(fit, s["anon_vmas"], s["avcs"], level)
        lo, hi = worth["ci_low_s"] * contention, worth["ci_high_s"] * contention
        point = worth["seconds"] * contention
        rows.append({
            "shell": s["shell"], "patch": s["patch"], "saved_anon_vmas": s["anon_vmas"],
            "saved_avcs": s["avcs"], "sys_s": sys_s[s["shell"]], "claimed_s": claim_s,
            "measured_s": point, "measured_ci_low_s": lo, "measured_ci_high_s": hi,
            "break_even_factor": claim_s / point if point > 0 else float("inf"),
            "break_even_factor_low": claim_s / hi if hi > 0 else float("inf"),
            "break_even_factor_high": claim_s / lo if lo > 0 else float("inf"),
            "ns_per_anon_vma_needed": (1e9 * claim_s / s["anon_vmas"] if s["anon_vmas"] > 0
                                       else float("inf")),
            "ns_per_avc_needed": 1e9 * claim_s / s["avcs"] if s["avcs"] > 0 else float("inf"),
        })
    return pd.DataFrame(rows)


def saved_from_numbers(numbers: dict, shells=("sh", "bash"), patches=("v5.5", "wei-intended"),
                       baseline: str = "v5.4") -> pd.DataFrame:
    """Allocations each patch saves against ``baseline``, from notebook 04's numbers."""
    def key(shell: str, policy: str, what: str) -> float:
        name = f"counterfactual.{shell}_{policy.replace('.', '').replace('-', '_')}_{what}"
        if name not in numbers:
            raise RmaplabError(f"{name} is not in paper/numbers.json",
                               hint="run notebook 04 first (rmaplab reproduce --only 04)")
        return float(numbers[name]["value"])

    return pd.DataFrame([{"shell": sh, "patch": p,
                          "anon_vmas": key(sh, baseline, "anon_vma") - key(sh, p, "anon_vma"),
                          "avcs": key(sh, baseline, "avc") - key(sh, p, "avc")}
                         for sh in shells for p in patches])


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
