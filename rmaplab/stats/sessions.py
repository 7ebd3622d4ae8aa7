"""Timings of one claim measured in several sessions: what moved between them.

A published A/B comparison is often not one experiment.  Wei Yang's 2019 numbers
came in two emails: v1 (5 Oct: Origin and a Patched v1 triple) and v4 (11 Oct: the
*same* Origin triple, digit for digit, and a new Patched v4 triple).  Treated as
sessions, the runs show what a single A/B table hides: how far two measurements of
the patched kernel differ from each other (session drift, plus the code that
changed between v1 and v4), how tight each session is, whether user time -- which
an anon_vma change cannot touch -- moved too (a negative control), and the sys/user
ratio per session, which cancels any session effect that scales user and sys time
alike (a clock-frequency change does; page-cache or background-load changes need
not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

RATIO = "sys/user"


def label(runs: pd.DataFrame, session: str) -> pd.DataFrame:
    """The runs of one session, with ``group`` set to its name."""
    return runs.assign(group=session)


def same_runs(x: pd.DataFrame, y: pd.DataFrame) -> bool:
    """True when two sets of runs hold the same values, metric by metric, in run order."""
    def values(df: pd.DataFrame) -> dict[str, list[float]]:
        runs = df[df["kind"] == "run"].sort_values("order")
        return {m: g["seconds"].tolist() for m, g in runs.groupby("metric")}
    return values(x) == values(y)


def with_ratio(runs: pd.DataFrame, num: str = "sys", den: str = "user") -> pd.DataFrame:
    """Add one ``sys/user`` record per run (the run's two times come from one `time` block)."""
    key = ["source", "group", "run"]
    wide = runs[runs["kind"] == "run"].pivot_table(index=key, columns="metric",
                                                   values="seconds", aggfunc="first")
    order = runs[(runs["kind"] == "run") & (runs["metric"] == num)].set_index(key)
    ratio = (wide[num] / wide[den]).rename("seconds").reset_index()
    ratio = ratio.join(order[["line", "order", "format"]], on=key)
    ratio = ratio.assign(metric=RATIO, kind="run", n=1)
    return pd.concat([runs, ratio[runs.columns.intersection(ratio.columns)]],
                     ignore_index=True)


def spread(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per session and metric: n, mean, SD, coefficient of variation, range."""
    rows = []
    for session in order:
        for metric, g in runs[(runs["group"] == session) & (runs["kind"] == "run")
                              ].groupby("metric", sort=False):
            v = g["seconds"].to_numpy(float)
            rows.append({"session": session, "metric": metric, "n": len(v),
                         "mean": v.mean(), "sd": v.std(ddof=1),
                         "cv_pct": 100 * v.std(ddof=1) / v.mean(),
                         "min": v.min(), "max": v.max()})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SpreadRatio:
    sd_ratio: float       # SD(b) / SD(a)
    p: float              # two-sided F-test of equal variances (assumes normal runs)
    df: tuple[int, int]


def sd_ratio(a: np.ndarray, b: np.ndarray) -> SpreadRatio:
    """Ratio of two sessions' SDs with the two-sided F-test of equal variances.

    Under normality only (the F-test is notoriously sensitive to it), and with 3 runs
    per session nothing weaker is available; read it as a description with a
    yardstick, not as a verdict.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(ddof=1), b.var(ddof=1)
    dfs = (len(b) - 1, len(a) - 1)
    if va == 0 or vb == 0:
        return SpreadRatio(float(np.sqrt(vb / va)) if va else float("inf"), float("nan"), dfs)
    f = vb / va
    p = 2 * min(stats.f.cdf(f, *dfs), stats.f.sf(f, *dfs))
    return SpreadRatio(float(np.sqrt(f)), float(min(1.0, p)), dfs)


def between(runs: pd.DataFrame, pairs: list[tuple[str, str]], alpha: float = 0.05,
            margin_pct: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Every pair of sessions compared (B against A) on real, user, sys and sys/user.

    real/user/sys are one Holm family per pair; the sys/user ratio is a question of its
    own.  Sessions from different emails have no known order between them: the design
    is 'unknown' (rmaplab.stats.compare with same_file=False).
    """
    from rmaplab.stats.comparison import compare

    keep = ["metric", "n_a", "n_b", "mean_a", "mean_b", "pct_change", "ci_low", "ci_high",
            "p_welch", "p_welch_holm", "p_mannwhitney", "p_min", "verdict_rule", "verdict"]
    rows = []
    for a, b in pairs:
        for metrics in (("real", "user", "sys"), (RATIO,)):
            present = tuple(m for m in metrics if (runs["metric"] == m).any())
            if not present:
                continue
            res = compare(runs[runs["group"] == a], runs[runs["group"] == b], label_a=a,
                          label_b=b, metrics=present, alpha=alpha, margin_pct=margin_pct,
                          seed=seed, same_file=False)
            rows.append(res.frame()[keep].assign(a=a, b=b))
    return pd.concat(rows, ignore_index=True)[["a", "b", *keep]]
