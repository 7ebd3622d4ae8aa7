"""Power: what these runs could have detected, and how many runs a target needs.

For the headline test (Welch's t on the means), with the effect expressed in pooled
standard deviations of the times and reported in percent of A's mean.  Power is
the two-sided two-sample t-test's, computed from scipy's noncentral t: statsmodels'
``TTestIndPower.power`` (same formula) returns NaN for some large effects (e.g.
d = 5 at 8 runs per side), which made "runs needed" step past a sufficient n; the
tests check this function against statsmodels wherever statsmodels is finite.
Distribution-free tests have a floor (:func:`rmaplab.stats.exact.min_p`): when it is
above alpha their power is zero whatever the effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, stats


def _nct_sf(x: float, df: float, nc: float) -> float:
    """P(T > x) for T noncentral t; by integration over the chi-square when scipy gives NaN.

    P(T > x) = E[Phi(nc - x * sqrt(V / df))] with V ~ chi2(df), integrated over the
    central 1 - 2e-12 of V.  scipy's noncentral t returns NaN far in some tails.
    """
    p = float(stats.nct.sf(x, df, nc))
    if math.isfinite(p):
        return p
    lo, hi = stats.chi2.ppf(1e-12, df), stats.chi2.isf(1e-12, df)
    value, _ = integrate.quad(
        lambda v: stats.norm.cdf(nc - x * math.sqrt(v / df)) * stats.chi2.pdf(v, df), lo, hi,
        points=[df], limit=200)
    return float(min(1.0, max(0.0, value)))


def t_test_power(effect: float, n_a: int, n_b: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test for a standardised effect (pooled df)."""
    df = n_a + n_b - 2
    nc = abs(effect) * math.sqrt(n_a * n_b / (n_a + n_b))
    crit = stats.t.isf(alpha / 2, df)
    # P(T < -crit) = P(-T > crit), and -T is noncentral t with -nc.
    return _nct_sf(crit, df, nc) + _nct_sf(crit, df, -nc)


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = len(a), len(b)
    return math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))


@dataclass(frozen=True)
class Power:
    pooled_sd: float              # seconds
    mde_pct: float | None         # smallest change detectable with this power, % of A's mean
    runs_for_target: int | None   # runs per side to detect target_pct with this power
    target_pct: float | None
    power: float
    alpha: float


def power_analysis(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, power: float = 0.8,
                   target_pct: float | None = None) -> Power:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sd = pooled_sd(a, b)
    mean_a = float(a.mean())
    if sd == 0 or mean_a <= 0:
        return Power(sd, None, None, target_pct, power, alpha)
    # Power rises from alpha (no effect) towards 1; find the effect that reaches `power`.
    top = 1.0
    while t_test_power(top, len(a), len(b), alpha) < power:
        top *= 2
    d = optimize.brentq(lambda e: t_test_power(e, len(a), len(b), alpha) - power, 0.0, top,
                        xtol=1e-12)
    mde = 100.0 * d * sd / mean_a
    runs = None
    if target_pct:
        runs = runs_needed(abs(target_pct) / 100.0 * mean_a / sd, alpha=alpha, power=power)
    return Power(sd, mde, runs, target_pct, power, alpha)


def runs_needed(effect: float, alpha: float = 0.05, power: float = 0.8,
                limit: int = 1_000_000) -> int | None:
    """Smallest n per side (>= 2) whose two-sample t power reaches ``power``; None past limit.

    Power grows with n, so a doubling search brackets the answer and bisection finds it.
    """
    if t_test_power(effect, 2, 2, alpha) >= power:
        return 2
    lo, hi = 2, 4
    while t_test_power(effect, hi, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if t_test_power(effect, mid, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi
