"""A/B comparison of timing runs, per metric and across the metric family.

Per metric (real, user, sys), B against A: the change of means with its interval
(:mod:`location`), the distribution-free tests with their floors (:mod:`exact`), Holm
across the metrics, what the design could detect (:mod:`power`), equivalence,
drift against run order (:mod:`drift`), and the verdict (:mod:`verdict`, every rule
in one place).  Across metrics: the run-order design and the user-time confounder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from rmaplab.errors import RmaplabError
from rmaplab.stats import drift, equivalence, exact, location, power
from rmaplab.stats import verdict as rules
from rmaplab.timings import METRICS


def fmt_p(p: float | None) -> str:
    """A p-value as printed in tables and messages."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if p == 0:
        return "<1e-300"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"


def fmt_tau(t: float | None) -> str:
    return "n/a" if t is None or not np.isfinite(t) else f"{t:+.2f}"


@dataclass
class MetricComparison:
    metric: str
    n_a: int
    n_b: int
    excluded_a: int                 # runs left out for a non-zero exit status
    excluded_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    median_a: float
    median_b: float
    min_a: float
    max_a: float
    min_b: float
    max_b: float
    # The headline: change of means and its interval, for the same ratio.
    pct_change: float | None        # 100*(mean_b/mean_a - 1)
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    ci_method: str                  # fieller-welch
    ci_note: str | None
    p_welch: float                  # Welch's t-test of the means
    p_welch_holm: float
    p_mannwhitney: float
    p_mannwhitney_method: str       # exact (given ties) or normal
    p_mannwhitney_holm: float
    p_permutation: float
    p_permutation_method: str       # exact, monte-carlo or normal
    p_permutation_mc_error: float | None
    p_permutation_resamples: int | None
    p_permutation_holm: float
    p_min: float                    # Mann-Whitney floor given n and ties
    p_min_holm: float               # the same after Holm: min(1, k * p_min)
    # Other views of the change.
    pct_change_geo: float | None    # ratio of geometric means (Welch on log times)
    geo_ci_low: float | None
    geo_ci_high: float | None
    p_welch_log: float
    bootstrap_ci_low: float | None  # BCa, ratio of means
    bootstrap_ci_high: float | None
    bootstrap_note: str | None
    hedges_g: float
    hl_shift_s: float
    hl_shift_pct: float | None      # of A's median
    hl_ci_low_s: float | None
    hl_ci_high_s: float | None
    hl_note: str | None
    # What the design could see.
    pooled_sd: float
    mde_pct: float | None
    target_pct: float | None
    runs_for_target: int | None
    tost_margin_pct: float
    p_tost: float
    equivalent: bool                # TOST alone
    equivalent_df: bool | None      # Hodges-Lehmann check
    equivalent_df_note: str | None
    drift_tau_a: float | None
    drift_p_a: float | None
    drift_tau_b: float | None
    drift_p_b: float | None
    drift_p_combined: float | None
    drift_detected: bool = False
    verdict: str = ""
    verdict_rule: str = ""
    verdict_kind: str = ""


@dataclass
class Comparison:
    label_a: str
    label_b: str
    alpha: float
    design: str
    design_note: str
    metrics: list[MetricComparison]
    warnings: list[str] = field(default_factory=list)
    confounder: dict | None = None

    def as_dict(self) -> dict:
        return {
            "a": self.label_a,
            "b": self.label_b,
            "alpha": self.alpha,
            "design": self.design,
            "design_note": self.design_note,
            "metrics": [_clean(asdict(m)) for m in self.metrics],
            "warnings": self.warnings,
            "confounder": self.confounder,
        }

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(m) for m in self.metrics])


def _clean(d: dict) -> dict:
    """NaN is not JSON: write null."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


@dataclass
class _Side:
    values: np.ndarray
    order: np.ndarray | None      # run order (None: unknown)
    excluded: int


def _side(df: pd.DataFrame, metric: str, label: str, warnings: list[str]) -> _Side | None:
    """One side's runs of one metric in run order, failed runs left out (and reported)."""
    runs = df[(df["metric"] == metric) & (df["kind"] == "run")]
    if runs.empty:
        return None
    recorded = len(runs)
    if "exit_status" in runs.columns:
        status = pd.to_numeric(runs["exit_status"], errors="coerce")
        failed = runs[status.notna() & (status != 0)]
        if not failed.empty:
            where = ", ".join(f"{r.source}:{r.line} (status {int(r.exit_status)})"
                              for r in failed.head(3).itertuples())
            more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
            warnings.append(f"{metric}: {label}: {len(failed)} run(s) exited with a non-zero "
                            f"status and are excluded: {where}{more}")
            runs = runs.drop(failed.index)
    # Run order: the loaders' `order`; frames without it (rmaplab.measure) number their
    # lines in run order; line 0 means no position is known.
    if "order" in runs.columns and runs["order"].notna().all():
        key = pd.to_numeric(runs["order"]).astype(float)
    else:
        key = runs["line"].astype(float)
    known = bool((key > 0).all())
    runs = runs.assign(_order=key).sort_values("_order", kind="stable")
    return _Side(runs["seconds"].to_numpy(float),
                 runs["_order"].to_numpy(float) if known else None, recorded - len(runs))


def _design_note(a: pd.DataFrame, b: pd.DataFrame, design: str, same_file: bool) -> str:
    if not same_file:
        return "two files: the run order between them is unknown"
    formats = set(a["format"]) | set(b["format"])
    if "hyperfine" in formats:
        return ("hyperfine runs all runs of one command before the next and its JSON holds "
                "no time stamps: taken as sequential")
    if design == "sequential":
        return ("one side's runs are all listed before the other's; the file order is "
                "taken as run order")
    if design == "interleaved":
        return "the two sides' runs alternate in the file, taken as run order"
    return "run order unknown"


def compare(a: pd.DataFrame, b: pd.DataFrame, *, label_a: str = "A", label_b: str = "B",
            metrics: tuple[str, ...] = METRICS, alpha: float = 0.05, margin_pct: float = 1.0,
            target_pct: float | None = None, seed: int = 0, same_file: bool = False
            ) -> Comparison:
    """Compare runs of B against runs of A (tidy timing frames, see rmaplab.timings)."""
    warnings: list[str] = []
    rows: list[MetricComparison] = []
    orders: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
    for metric in metrics:
        if not ((a["metric"] == metric).any() or (b["metric"] == metric).any()):
            continue  # metric absent from both inputs
        sa = _side(a, metric, label_a, warnings)
        sb = _side(b, metric, label_b, warnings)
        for side, full, label in ((sa, a, label_a), (sb, b, label_b)):
            if side is None:
                means = full[(full["metric"] == metric) & (full["kind"] == "mean")]
                if not means.empty:
                    warnings.append(f"{metric}: {label} has only a mean of "
                                    f"{means['n'].iloc[0]} runs (no per-run values); not tested")
                else:
                    warnings.append(f"{metric}: no runs for {label}; not tested")
        if sa is None or sb is None:
            continue
        for label, side, full in ((label_a, sa, a), (label_b, sb, b)):
            if len(side.values) < 2:
                first = full[(full["metric"] == metric) & (full["kind"] == "run")].iloc[0]
                raise RmaplabError(
                    f"{label} has {'a single' if len(side.values) else 'no usable'} {metric} "
                    "run; an A/B comparison needs at least 2 runs per side",
                    path=first["source"], line=int(first["line"]))
        orders[metric] = (sa.order, sb.order)
        rows.append(_compare_metric(metric, sa, sb, alpha, margin_pct, target_pct, seed))
    if not rows:
        raise RmaplabError("no metric has per-run values on both sides",
                           hint="; ".join(warnings) if warnings else None)

    k = len(rows)
    for key in ("p_welch", "p_mannwhitney", "p_permutation"):
        _holm(rows, key, key + "_holm")
    for m in rows:
        m.p_min_holm = min(1.0, k * m.p_min)
        evidence = rules.Evidence(
            alpha=alpha, family_size=k, p_welch_holm=m.p_welch_holm,
            p_mannwhitney_holm=m.p_mannwhitney_holm, p_min=m.p_min, p_tost=m.p_tost,
            equivalent_df=m.equivalent_df, margin_pct=margin_pct,
            drift_p=(m.drift_p_a, m.drift_p_b, m.drift_p_combined))
        v = rules.decide(evidence)
        m.verdict, m.verdict_rule, m.verdict_kind = v.text, v.rule, v.kind
        m.drift_detected = rules.drift_detected(evidence)

    floors = [m for m in rows if m.p_min_holm >= alpha]
    if floors:
        m = floors[0]
        warnings.append(
            f"{m.n_a}+{m.n_b} runs: Mann-Whitney cannot reach p < {alpha:g} for "
            + ", ".join(x.metric for x in floors)
            + f" (smallest two-sided p = {m.p_min:.3g}"
            + (f", {m.p_min_holm:.3g} after Holm over {k} metrics" if k > 1 else "")
            + "); a 'significant' Welch result there rests on assuming normality")
    for m in rows:
        if m.drift_detected:
            warnings.append(
                f"{m.metric}: times drift with run order (Kendall tau {label_a} "
                f"{fmt_tau(m.drift_tau_a)}, {label_b} {fmt_tau(m.drift_tau_b)}; stratified p = "
                f"{fmt_p(m.drift_p_combined)}): the runs are not exchangeable")

    design = "unknown"
    if same_file and orders:
        oa, ob = next(iter(orders.values()))
        if oa is not None and ob is not None:
            design = drift.design(oa, ob)
    note = _design_note(a, b, design, same_file)
    if design == "sequential":
        warnings.append(
            "every run of one side precedes every run of the other (not interleaved): "
            "drift over time (thermal state, page cache, background load) is confounded "
            "with the change; interleave A and B in a seeded random order")
    elif design == "unknown":
        warnings.append(f"run order between the sides is unknown ({note}); interleaved runs "
                        "in one file let drift be separated from the change")

    confounder = None
    user = next((m for m in rows if m.metric == "user"), None)
    if user is not None and user.verdict_kind == "change":
        # No percentage when A's mean user time is 0 (a command too short for the 10 ms
        # clock): the change is then stated in seconds.
        how = (f"by {user.pct_change:+.1f}%" if user.pct_change is not None
               else f"from {user.mean_a:.3f} s to {user.mean_b:.3f} s")
        confounder = {
            "metric": "user",
            "pct_change": user.pct_change,
            "p_welch_holm": user.p_welch_holm,
            "p_mannwhitney_holm": user.p_mannwhitney_holm,
            "message": (
                f"user time changed {how} (Welch Holm p = "
                f"{fmt_p(user.p_welch_holm)}, {user.verdict}): a change confined to kernel code "
                "such as anon_vma bookkeeping cannot move user time, so something else "
                "differed between A and B (load, CPU frequency, caches, compiler, run order)"),
        }
        warnings.append(confounder["message"])
    return Comparison(label_a, label_b, alpha, design, note, rows, warnings, confounder)


def _compare_metric(metric: str, sa: _Side, sb: _Side, alpha: float, margin_pct: float,
                    target_pct: float | None, seed: int) -> MetricComparison:
    va, vb = sa.values, sb.values
    level = 1.0 - alpha
    ratio = location.ratio_of_means(va, vb, level=level)
    geo = location.welch_log(va, vb, level=level)
    mw = exact.mann_whitney(va, vb)
    perm = exact.permutation_means(va, vb, seed=seed)
    boot = location.bootstrap_ratio(va, vb, level=level, seed=seed)
    hl = location.hodges_lehmann(va, vb, level=level)
    pw = power.power_analysis(va, vb, alpha=alpha,
                              target_pct=target_pct if target_pct is not None
                              else (ratio.pct_change or None))
    eq = equivalence.tost(va, vb, margin_pct, alpha=alpha)
    da = drift.trend(va, sa.order) if sa.order is not None else drift.Drift(None, None, len(va))
    db = drift.trend(vb, sb.order) if sb.order is not None else drift.Drift(None, None, len(vb))
    known = [v for v, s in ((va, sa), (vb, sb)) if s.order is not None]
    median_a = float(np.median(va))
    return MetricComparison(
        metric=metric, n_a=len(va), n_b=len(vb), excluded_a=sa.excluded, excluded_b=sb.excluded,
        mean_a=float(va.mean()), mean_b=float(vb.mean()),
        sd_a=float(va.std(ddof=1)), sd_b=float(vb.std(ddof=1)),
        median_a=median_a, median_b=float(np.median(vb)),
        min_a=float(va.min()), max_a=float(va.max()), min_b=float(vb.min()), max_b=float(vb.max()),
        pct_change=ratio.pct_change, ci_low=ratio.ci.low, ci_high=ratio.ci.high,
        ci_level=level, ci_method=ratio.ci.method, ci_note=ratio.ci.note,
        p_welch=ratio.p, p_welch_holm=float("nan"),
        p_mannwhitney=mw.p, p_mannwhitney_method=mw.method, p_mannwhitney_holm=float("nan"),
        p_permutation=perm.p, p_permutation_method=perm.method,
        p_permutation_mc_error=perm.mc_error, p_permutation_resamples=perm.n_resamples,
        p_permutation_holm=float("nan"),
        p_min=mw.floor, p_min_holm=float("nan"),
        pct_change_geo=geo.pct_change_geo, geo_ci_low=geo.ci.low, geo_ci_high=geo.ci.high,
        p_welch_log=geo.p,
        bootstrap_ci_low=boot.low, bootstrap_ci_high=boot.high, bootstrap_note=boot.note,
        hedges_g=location.hedges_g(va, vb),
        hl_shift_s=hl.shift_s,
        hl_shift_pct=100 * hl.shift_s / median_a if median_a > 0 else None,
        hl_ci_low_s=hl.ci.low, hl_ci_high_s=hl.ci.high, hl_note=hl.ci.note,
        pooled_sd=pw.pooled_sd, mde_pct=pw.mde_pct, target_pct=pw.target_pct,
        runs_for_target=pw.runs_for_target,
        tost_margin_pct=margin_pct, p_tost=eq.p, equivalent=eq.equivalent,
        equivalent_df=eq.df_equivalent, equivalent_df_note=eq.df_note,
        drift_tau_a=da.tau, drift_p_a=da.p, drift_tau_b=db.tau, drift_p_b=db.p,
        drift_p_combined=drift.combined_trend(known) if known else None,
    )


def holm(ps: list[float]) -> list[float]:
    """Holm-adjusted p-values (step-down: max over j <= i of (k - j + 1) * p_(j), capped at 1).

    Three lines, so written here: statsmodels' multipletests (the reference in the
    tests) costs a second of imports and a gc.collect() per call.
    """
    p = np.asarray(ps, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted.tolist()


def _holm(rows: list[MetricComparison], key: str, out: str) -> None:
    ps = [getattr(m, key) for m in rows]
    finite = [i for i, p in enumerate(ps) if np.isfinite(p)]
    for i, p in zip(finite, holm([ps[i] for i in finite]), strict=True):
        setattr(rows[i], out, p)


