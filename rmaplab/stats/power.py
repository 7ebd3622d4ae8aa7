"""Power: what these runs could have detected, and how many runs a target needs.

Computed for Welch-on-logs through statsmodels' two-sample t power, with the
effect expressed in pooled standard deviations of log time.  Exact rank and
permutation tests have a floor (:func:`rmaplab.stats.exact.min_p`): when it is
above alpha their power is zero whatever the effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.power import TTestIndPower


def pooled_log_sd(a: np.ndarray, b: np.ndarray) -> float:
    la, lb = np.log(a), np.log(b)
    na, nb = len(a), len(b)
    return math.sqrt(((na - 1) * la.var(ddof=1) + (nb - 1) * lb.var(ddof=1)) / (na + nb - 2))


@dataclass(frozen=True)
class Power:
    log_sd: float                 # pooled SD of log times (~ coefficient of variation)
    mde_pct: float | None         # smallest change detectable with this power, in %
    runs_for_target: int | None   # runs per side to detect target_pct with this power
    target_pct: float | None
    power: float
    alpha: float


def power_analysis(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, power: float = 0.8,
                   target_pct: float | None = None) -> Power:
    sd = pooled_log_sd(a, b)
    if not np.isfinite(sd) or sd == 0:
        return Power(sd, None, None, target_pct, power, alpha)
    analysis = TTestIndPower()
    d = analysis.solve_power(effect_size=None, nobs1=len(a), ratio=len(b) / len(a),
                             alpha=alpha, power=power, alternative="two-sided")
    mde = 100.0 * (math.exp(float(d) * sd) - 1.0)
    runs = None
    if target_pct:
        effect = abs(math.log(1.0 + target_pct / 100.0)) / sd
        runs = runs_needed(effect, alpha=alpha, power=power)
    return Power(sd, mde, runs, target_pct, power, alpha)


def runs_needed(effect: float, alpha: float = 0.05, power: float = 0.8,
                limit: int = 100_000) -> int | None:
    """Smallest n per side whose two-sample t power reaches ``power`` (statsmodels power).

    A direct search, because statsmodels' root finder gives up when fewer than ~2
    runs would do (huge effects) or the bracket is far off.
    """
    analysis = TTestIndPower()
    n = 2
    while n <= limit:
        if analysis.power(effect_size=effect, nobs1=n, alpha=alpha, ratio=1.0,
                          alternative="two-sided") >= power:
            # Step back through a doubling overshoot to the first n that suffices.
            lo = max(2, n // 2)
            for m in range(lo, n + 1):
                if analysis.power(effect_size=effect, nobs1=m, alpha=alpha, ratio=1.0,
                                  alternative="two-sided") >= power:
                    return m
        n *= 2
    return None
