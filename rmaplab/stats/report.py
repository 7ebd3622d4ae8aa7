"""The human-readable `compare` table, in the spirit of benchstat and hyperfine.

One compact row per metric: each side's mean +- SD in an auto-scaled unit, the
change of means with its interval, the Holm-adjusted p-values with the floor, the
verdict; then how each p was computed (and its Monte Carlo error when simulated),
and with ``verbose`` a block per metric with every other quantity.
"""

from __future__ import annotations

import math

from rmaplab.stats.comparison import Comparison, MetricComparison
from rmaplab.stats.comparison import fmt_p as _p
from rmaplab.stats.comparison import fmt_tau as _tau

_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def unit_for(seconds: float) -> tuple[float, str]:
    """The largest unit in which the value is at least 1 (seconds at most)."""
    for scale, name in _UNITS:
        if abs(seconds) >= scale:
            return scale, name
    return _UNITS[-1]


def _decimals(sd: float) -> int:
    """Show one digit past the SD's leading digit (3 decimals when there is no spread)."""
    if not sd > 0:
        return 3
    return max(0, min(6, 1 - math.floor(math.log10(sd))))


def _row_decimals(m: MetricComparison, scale: float) -> int:
    """One set of decimals for both sides: enough for the tighter side's SD."""
    spreads = [sd for sd in (m.sd_a, m.sd_b) if sd > 0]
    return _decimals(min(spreads) / scale) if spreads else 3


def _centre(mean: float, sd: float, scale: float, unit: str, d: int) -> str:
    return f"{mean / scale:.{d}f} ± {sd / scale:.{d}f} {unit}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.1f}%"


def _change(m: MetricComparison) -> str:
    ci = "[" + ", ".join("-inf" if m.ci_low is None and i == 0 else
                         "+inf" if m.ci_high is None and i == 1 else _pct(v)
                         for i, v in enumerate((m.ci_low, m.ci_high))) + "]"
    if m.ci_low is None and m.ci_high is None:
        ci = "[n/a]"
    return f"{_pct(m.pct_change)} {ci}"


def format_table(c: Comparison, verbose: bool = False) -> str:
    level = f"{100 * (1 - c.alpha):g}%"
    n = ", ".join(sorted({f"{m.n_a}+{m.n_b}" for m in c.metrics}))
    lines = [f"A = {c.label_a}    B = {c.label_b}    runs {n}",
             f"design: {c.design} -- {c.design_note}", ""]
    rows = []
    for m in c.metrics:
        scale, unit = unit_for(max(m.mean_a, m.mean_b))
        d = _row_decimals(m, scale)
        rows.append([m.metric, _centre(m.mean_a, m.sd_a, scale, unit, d),
                     _centre(m.mean_b, m.sd_b, scale, unit, d), _change(m),
                     _p(m.p_welch_holm), _p(m.p_mannwhitney_holm), _p(m.p_permutation_holm),
                     _p(m.p_min_holm), m.verdict])
    header = ["metric", "A: mean ± sd", "B: mean ± sd", f"change [{level} CI]", "p Welch",
              "p MWU", "p perm", "p floor", "verdict"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {4, 5, 6, 7}

    def fmt(r: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    lines.append(fmt(header))
    lines.append("-" * len(fmt(header)))
    lines.extend(fmt(r) for r in rows)
    lines.append("")
    lines.append("change = mean(B)/mean(A) - 1, with Fieller's interval for that ratio (Welch df).")
    k = len(c.metrics)
    lines.append(f"p values Holm-adjusted over {k} metric{'s' * (k > 1)}; p floor = the smallest "
                 "Mann-Whitney p these runs and ties allow, after Holm.")
    lines.extend(_methods(c))
    if verbose:
        for m in c.metrics:
            lines.append("")
            lines.extend(_details(m, c))
    if c.warnings:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in c.warnings)
    return "\n".join(lines)


def _methods(c: Comparison) -> list[str]:
    def grouped(method_of) -> str:
        by: dict[str, list[str]] = {}
        for m in c.metrics:
            by.setdefault(method_of(m), []).append(m.metric)
        if len(by) == 1:
            return next(iter(by))
        return "; ".join(f"{k} ({', '.join(v)})" for k, v in by.items())

    names = {"exact": "exact given ties", "normal": "normal approximation, tie and "
             "continuity corrected"}
    out = ["methods: p MWU " + grouped(lambda m: names[m.p_mannwhitney_method])]
    perm_names = {"exact": "every split", "normal": "normal approximation"}

    def perm(m: MetricComparison) -> str:
        if m.p_permutation_method == "monte-carlo":
            return f"Monte Carlo, {m.p_permutation_resamples} random splits"
        if m.p_permutation_method == "exact" and m.p_permutation_resamples:
            return f"exact, all {m.p_permutation_resamples} splits"
        return perm_names[m.p_permutation_method]

    out.append("         p perm (difference of means) " + grouped(perm))
    mc = [m for m in c.metrics if m.p_permutation_mc_error is not None]
    if mc:
        out.append("         Monte Carlo standard error of p perm (unadjusted): "
                   + ", ".join(f"{m.metric} ±{m.p_permutation_mc_error:.4f}" for m in mc))
    return out


def _details(m: MetricComparison, c: Comparison) -> list[str]:
    scale, unit = unit_for(max(m.mean_a, m.mean_b))
    d = _row_decimals(m, scale)

    def t(x: float | None) -> str:
        return "n/a" if x is None else f"{x / scale:.{d}f} {unit}"

    def side(label: str, n: int, excl: int, mean, sd, med, lo, hi) -> str:
        dropped = f" ({excl} failed run(s) excluded)" if excl else ""
        return (f"  {label}: n {n}{dropped}, mean {t(mean)}, sd {t(sd)}, median {t(med)}, "
                f"range {t(lo)} .. {t(hi)}")

    level = f"{100 * m.ci_level:g}%"
    hl_ci = (f"[{t(m.hl_ci_low_s)}, {t(m.hl_ci_high_s)}] ({m.hl_note})"
             if m.hl_ci_low_s is not None else f"n/a ({m.hl_note})")
    boot = (f"[{_pct(m.bootstrap_ci_low)}, {_pct(m.bootstrap_ci_high)}] ({m.bootstrap_note})"
            if m.bootstrap_ci_low is not None else f"n/a ({m.bootstrap_note})")
    target = (f"; runs per side for {m.target_pct:+.1f}%: "
              f"{m.runs_for_target if m.runs_for_target is not None else 'more than 10^6'}"
              if m.target_pct else "")
    eq = "yes" if m.equivalent else "no"
    drift_line = (f"  drift (Kendall tau vs run order): {c.label_a} {_tau(m.drift_tau_a)} "
                  f"(p {_p(m.drift_p_a)}), {c.label_b} {_tau(m.drift_tau_b)} "
                  f"(p {_p(m.drift_p_b)}), both sides (stratified) p {_p(m.drift_p_combined)}"
                  + ("  -> drift" if m.drift_detected else ""))
    return [
        f"{m.metric}: {m.verdict}  [rule {m.verdict_rule}]",
        side(c.label_a, m.n_a, m.excluded_a, m.mean_a, m.sd_a, m.median_a, m.min_a, m.max_a),
        side(c.label_b, m.n_b, m.excluded_b, m.mean_b, m.sd_b, m.median_b, m.min_b, m.max_b),
        f"  change of means {_pct(m.pct_change)}, {level} CI {_change(m).split(' ', 1)[1]} "
        f"({m.ci_method}{'; ' + m.ci_note if m.ci_note else ''})",
        f"  change of geometric means {_pct(m.pct_change_geo)}, {level} CI "
        f"[{_pct(m.geo_ci_low)}, {_pct(m.geo_ci_high)}] (Welch on log times, p {_p(m.p_welch_log)})",
        f"  bootstrap (BCa) {level} CI of the change of means: {boot}",
        f"  Hodges-Lehmann shift {t(m.hl_shift_s)} ({_pct(m.hl_shift_pct)} of A's median), "
        f"{level} CI {hl_ci}",
        f"  Hedges' g {m.hedges_g:+.2f}" if math.isfinite(m.hedges_g) else "  Hedges' g n/a",
        f"  unadjusted p: Welch {_p(m.p_welch)}, Mann-Whitney {_p(m.p_mannwhitney)} "
        f"({m.p_mannwhitney_method}), permutation {_p(m.p_permutation)} "
        f"({m.p_permutation_method}"
        + (f", ±{m.p_permutation_mc_error:.4f}" if m.p_permutation_mc_error is not None else "")
        + f"), floor {_p(m.p_min)}",
        f"  power: smallest change detectable at 80% = "
        f"{_pct(m.mde_pct).lstrip('+') if m.mde_pct is not None else 'n/a'}{target}",
        f"  equivalence within ±{m.tost_margin_pct:g}%: TOST p {_p(m.p_tost)} ({eq}); "
        f"distribution-free: {m.equivalent_df_note}",
        drift_line,
    ]
