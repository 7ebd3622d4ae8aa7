"""Power: what these runs could have detected, and how many runs a target needs.

For the headline test, Welch's t on the means: its power for a difference of means
delta, with each side's standard deviation taken as the observed one, is the noncentral
t's with noncentrality delta / sqrt(s_a^2/n_a + s_b^2/n_b) on the Welch-Satterthwaite
degrees of freedom (:func:`welch_power`).  With one side far tighter than the other,
as in the 2019 runs, those degrees of freedom fall towards n - 1 of the looser side
and the smallest detectable change grows: the pooled-SD Student power this module
gave until 2026-12-03 called 3.0% detectable in the seed's sys time where Welch's test
needs about 4.4% (by simulation).  The approximation treats the SDs and the degrees of
freedom as known; the tests check it against a simulation of Welch's test.  Power is
computed from scipy's noncentral t: statsmodels' ``TTestIndPower.power`` (the same
formula for equal SDs) returns NaN for some large effects (e.g. d = 5 at 8 runs per
side), which made "runs needed" step past a sufficient n.  Distribution-free tests have a
floor (:func:`rmaplab.stats.exact.min_p`): when it is above alpha their power is zero
whatever the effect.
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


def welch_power(delta: float, sd_a: float, sd_b: float, n_a: int, n_b: int,
                alpha: float = 0.05) -> float:
    """Power of Welch's two-sided test for a difference of means ``delta`` (seconds), each
    side's SD taken as known (noncentral t on the Welch-Satterthwaite df)."""
    va, vb = sd_a * sd_a / n_a, sd_b * sd_b / n_b
    se2 = va + vb
    df = se2 * se2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))
    nc = abs(delta) / math.sqrt(se2)
    crit = stats.t.isf(alpha / 2, df)
    return _nct_sf(crit, df, nc) + _nct_sf(crit, df, -nc)


def power_analysis(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, power: float = 0.8,
                   target_pct: float | None = None) -> Power:
    """Welch's power at these runs' sizes and SDs: the smallest change it detects with
    ``power`` (percent of A's mean) and the runs per side that ``target_pct`` needs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sd = pooled_sd(a, b)
    sd_a, sd_b = float(np.std(a, ddof=1)), float(np.std(b, ddof=1))
    mean_a = float(a.mean())
    if sd_a == 0 or sd_b == 0 or mean_a <= 0:
        return Power(sd, None, None, target_pct, power, alpha)

    def short(delta: float, n_a: int, n_b: int) -> float:
        return welch_power(delta, sd_a, sd_b, n_a, n_b, alpha) - power

    # Power rises from alpha (no effect) towards 1; find the change that reaches `power`.
    top = sd
    while short(top, len(a), len(b)) < 0:
        top *= 2
    delta = optimize.brentq(short, 0.0, top, args=(len(a), len(b)), xtol=1e-12 * top)
    mde = 100.0 * delta / mean_a
    runs = None
    if target_pct:
        runs = _first_n(lambda n: short(abs(target_pct) / 100.0 * mean_a, n, n) >= 0)
    return Power(sd, mde, runs, target_pct, power, alpha)


def _first_n(enough, limit: int = 1_000_000) -> int | None:
    """Smallest n >= 2 with ``enough(n)`` (which stays true as n grows); None past limit.
    A doubling search brackets it and bisection finds it."""
    if enough(2):
        return 2
    lo, hi = 2, 4
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi


def runs_needed(effect: float, alpha: float = 0.05, power: float = 0.8,
                limit: int = 1_000_000) -> int | None:
    """Smallest n per side (>= 2) whose two-sample t power, for a standardised effect
    with equal SDs, reaches ``power``; None past limit."""
    return _first_n(lambda n: t_test_power(effect, n, n, alpha) >= power, limit)
