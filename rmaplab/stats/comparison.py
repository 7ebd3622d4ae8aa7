"""A/B comparison of timing runs, per metric and across the metric family.

The output answers, per metric (real, user, sys): how big is the change (B vs A,
percent of A), how sure can we be (log-Welch CI, exact tests and their floor,
Holm across metrics), what could this design detect (MDE, runs needed), and
what else could explain it (user time moving, run order).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from rmaplab.errors import RmaplabError
from rmaplab.stats import drift, equivalence, exact, location, power
from rmaplab.timings import METRICS


@dataclass
class MetricComparison:
    metric: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    pct_change: float               # 100*(mean_b/mean_a - 1)
    pct_change_geo: float           # 100*(gm_b/gm_a - 1), the estimate the CI is for
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    ci_method: str
    p_welch: float
    p_welch_holm: float
    p_mannwhitney: float
    p_permutation: float
    p_permutation_exact: bool
    p_permutation_holm: float
    p_min: float
    bootstrap_ci_low: float | None
    bootstrap_ci_high: float | None
    bootstrap_note: str | None
    hedges_g: float
    hl_shift_s: float
    hl_ci_low_s: float | None
    hl_ci_high_s: float | None
    hl_note: str | None
    log_sd: float
    mde_pct: float | None
    target_pct: float | None
    runs_for_target: int | None
    tost_margin_pct: float
    p_tost: float
    equivalent: bool
    drift_tau_a: float | None
    drift_p_a: float | None
    drift_tau_b: float | None
    drift_p_b: float | None
    verdict: str = ""


@dataclass
class Comparison:
    label_a: str
    label_b: str
    alpha: float
    design: str
    metrics: list[MetricComparison]
    warnings: list[str] = field(default_factory=list)
    confounder: dict | None = None

    def as_dict(self) -> dict:
        return {
            "a": self.label_a,
            "b": self.label_b,
            "alpha": self.alpha,
            "design": self.design,
            "metrics": [_clean(asdict(m)) for m in self.metrics],
            "warnings": self.warnings,
            "confounder": self.confounder,
        }

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(m) for m in self.metrics])


def _clean(d: dict) -> dict:
    """NaN is not JSON: write null."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def _runs(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    sel = df[(df["metric"] == metric) & (df["kind"] == "run")]
    return sel.sort_values(["source", "line"])


def verdict(m: MetricComparison, alpha: float) -> str:
    if m.equivalent:
        return f"equivalent within +-{m.tost_margin_pct:g}%"
    if np.isfinite(m.p_welch_holm) and m.p_welch_holm < alpha:
        if m.p_permutation_holm < alpha:
            return "change"
        if m.p_min >= alpha:
            return "change only under log-normality"
        return "inconclusive: tests disagree"
    return "no evidence of change"


def compare(a: pd.DataFrame, b: pd.DataFrame, *, label_a: str = "A", label_b: str = "B",
            metrics: tuple[str, ...] = METRICS, alpha: float = 0.05, margin_pct: float = 1.0,
            target_pct: float | None = None, seed: int = 0, same_file: bool = False
            ) -> Comparison:
    """Compare runs of B against runs of A (tidy timing frames, see rmaplab.timings)."""
    warnings: list[str] = []
    rows: list[MetricComparison] = []
    orders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for metric in metrics:
        ra, rb = _runs(a, metric), _runs(b, metric)
        if not ((a["metric"] == metric).any() or (b["metric"] == metric).any()):
            continue  # metric absent from both inputs
        for r, full, label in ((ra, a, label_a), (rb, b, label_b)):
            if r.empty:
                means = full[(full["metric"] == metric) & (full["kind"] == "mean")]
                if not means.empty:
                    warnings.append(f"{metric}: {label} has only a mean of "
                                    f"{means['n'].iloc[0]} runs (no per-run values); not tested")
                else:
                    warnings.append(f"{metric}: no runs for {label}; not tested")
        if ra.empty or rb.empty:
            continue
        for label, r in ((label_a, ra), (label_b, rb)):
            if len(r) < 2:
                first = r.iloc[0]
                raise RmaplabError(
                    f"{label} has a single {metric} run; an A/B comparison needs at least 2 "
                    "runs per side", path=first["source"], line=int(first["line"]))
        va, vb = ra["seconds"].to_numpy(float), rb["seconds"].to_numpy(float)
        orders[metric] = (ra["line"].to_numpy(), rb["line"].to_numpy())
        welch = location.welch_log(va, vb)
        perm = exact.permutation_means(va, vb, seed=seed)
        boot = location.bootstrap_ratio(va, vb, seed=seed)
        hl, hl_ci = location.hodges_lehmann(va, vb)
        change = 100.0 * (vb.mean() / va.mean() - 1.0)
        pw = power.power_analysis(va, vb, alpha=alpha,
                                  target_pct=target_pct if target_pct is not None
                                  else (abs(change) or None))
        eq = equivalence.tost(va, vb, margin_pct, alpha=alpha) if welch.ci.low is not None \
            else equivalence.Equivalence(margin_pct, float("nan"), False)
        da = drift.trend(va, np.arange(len(va))) if same_file else drift.Drift(None, None, len(va))
        db = drift.trend(vb, np.arange(len(vb))) if same_file else drift.Drift(None, None, len(vb))
        rows.append(MetricComparison(
            metric=metric, n_a=len(va), n_b=len(vb),
            mean_a=float(va.mean()), mean_b=float(vb.mean()),
            sd_a=float(va.std(ddof=1)), sd_b=float(vb.std(ddof=1)),
            pct_change=float(change), pct_change_geo=welch.pct_change_geo,
            ci_low=welch.ci.low, ci_high=welch.ci.high, ci_level=welch.ci.level,
            ci_method="welch-log (ratio of geometric means)",
            p_welch=welch.p, p_welch_holm=float("nan"),
            p_mannwhitney=exact.mann_whitney(va, vb),
            p_permutation=perm.p, p_permutation_exact=perm.exact,
            p_permutation_holm=float("nan"),
            p_min=exact.min_p(len(va), len(vb)),
            bootstrap_ci_low=boot.low, bootstrap_ci_high=boot.high, bootstrap_note=boot.note,
            hedges_g=location.hedges_g(va, vb),
            hl_shift_s=hl, hl_ci_low_s=hl_ci.low, hl_ci_high_s=hl_ci.high, hl_note=hl_ci.note,
            log_sd=pw.log_sd, mde_pct=pw.mde_pct, target_pct=pw.target_pct,
            runs_for_target=pw.runs_for_target,
            tost_margin_pct=margin_pct, p_tost=eq.p, equivalent=eq.equivalent,
            drift_tau_a=da.tau, drift_p_a=da.p, drift_tau_b=db.tau, drift_p_b=db.p,
        ))
    if not rows:
        raise RmaplabError("no metric has per-run values on both sides",
                           hint="; ".join(warnings) if warnings else None)

    _holm(rows, "p_welch", "p_welch_holm", alpha)
    _holm(rows, "p_permutation", "p_permutation_holm", alpha)
    for m in rows:
        m.verdict = verdict(m, alpha)

    n_a, n_b = rows[0].n_a, rows[0].n_b
    floor = exact.min_p(n_a, n_b)
    if floor >= alpha:
        warnings.append(
            f"{n_a}+{n_b} runs: no rank or permutation test can reach p < {alpha:g} "
            f"(smallest two-sided p = {floor:.3f}); any 'significant' result here rests on "
            "assuming log-normal timings")
    if rows[0].bootstrap_note:
        warnings.append(f"bootstrap interval {rows[0].bootstrap_note}")

    design = "unknown"
    if same_file and orders:
        oa, ob = next(iter(orders.values()))
        design = drift.design(oa, ob)
        if design == "sequential":
            warnings.append(
                "every run of one side precedes every run of the other (not interleaved): "
                "drift over time (thermal state, page cache, background load) is confounded "
                "with the change; interleave A and B in a seeded random order")
    elif not same_file:
        warnings.append("run order across the two files is unknown; interleaved runs in one "
                        "file let drift be checked")

    confounder = None
    user = next((m for m in rows if m.metric == "user"), None)
    if user is not None and np.isfinite(user.p_welch_holm) and user.p_welch_holm < alpha:
        confounder = {
            "metric": "user",
            "pct_change": user.pct_change,
            "p_welch_holm": user.p_welch_holm,
            "message": (
                f"user time changed by {user.pct_change:+.1f}% (Holm p = "
                f"{user.p_welch_holm:.3g}): a change confined to kernel code such as anon_vma "
                "bookkeeping cannot move user time, so something else differed between A and "
                "B (load, CPU frequency, caches, compiler, run order)"),
        }
        warnings.append(confounder["message"])
    return Comparison(label_a, label_b, alpha, design, rows, warnings, confounder)


def _holm(rows: list[MetricComparison], key: str, out: str, alpha: float) -> None:
    ps = [getattr(m, key) for m in rows]
    finite = [i for i, p in enumerate(ps) if np.isfinite(p)]
    if not finite:
        return
    adjusted = multipletests([ps[i] for i in finite], alpha=alpha, method="holm")[1]
    for i, p in zip(finite, adjusted, strict=True):
        setattr(rows[i], out, float(p))


def _fmt_pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.1f}%"


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def format_table(c: Comparison) -> str:
    """Human-readable summary in the spirit of benchstat / ministat."""
    header = (f"{'metric':<6} {'n':>5} {'mean A':>10} {'mean B':>10} {'change':>8} "
              f"{'95% CI (log-Welch)':>19} {'p Welch*':>9} {'p MWU':>6} {'p perm*':>8} "
              f"{'p min':>6}  verdict")
    lines = [f"A = {c.label_a}", f"B = {c.label_b}", "", header, "-" * len(header)]
    for m in c.metrics:
        ci = f"[{_fmt_pct(m.ci_low)}, {_fmt_pct(m.ci_high)}]"
        lines.append(
            f"{m.metric:<6} {f'{m.n_a}+{m.n_b}':>5} {m.mean_a:>9.3f}s {m.mean_b:>9.3f}s "
            f"{_fmt_pct(m.pct_change):>8} {ci:>19} {_fmt_p(m.p_welch_holm):>9} "
            f"{_fmt_p(m.p_mannwhitney):>6} {_fmt_p(m.p_permutation_holm):>8} "
            f"{_fmt_p(m.p_min):>6}  {m.verdict}")
    lines.append("")
    lines.append("* Holm-adjusted across the metrics shown.  change = mean(B)/mean(A) - 1; "
                 "the CI is for the ratio of geometric means.")
    lines.append(f"  power: smallest change detectable (80% power, alpha {c.alpha:g}) = "
                 + ", ".join(f"{m.metric} {_fmt_pct(m.mde_pct).lstrip('+')}" for m in c.metrics))
    if c.warnings:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in c.warnings)
    return "\n".join(lines)
