"""Equivalence: is the change of means inside +-margin percent of A's mean?

Two one-sided Welch tests (TOST) on the same ratio the headline reports:
H0 mean(B) <= (1 - m) mean(A) and H0 mean(B) >= (1 + m) mean(A), each Welch's
t-test of B against r*A.  Rejecting both at alpha is the same as the (1 - 2 alpha)
Fieller-Welch interval lying inside [-m, +m].  Like Welch's test it leans on
normality at small n, so the verdict also asks for the distribution-free view
(:func:`distribution_free`): the (1 - 2 alpha) Hodges-Lehmann interval of the shift,
in percent of A's median, inside [-m, +m].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rmaplab.stats import location


@dataclass(frozen=True)
class Equivalence:
    margin_pct: float
    p: float                      # TOST p: the larger of the two one-sided p-values
    equivalent: bool              # TOST rejects both at alpha
    df_equivalent: bool | None    # Hodges-Lehmann interval inside the margin; None: no interval
    df_note: str | None = None


def tost(a: np.ndarray, b: np.ndarray, margin_pct: float, alpha: float = 0.05) -> Equivalence:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    df_eq, note = distribution_free(a, b, margin_pct, alpha)
    if a.mean() <= 0 or (np.all(a == a[0]) and np.all(b == b[0])):
        # No ratio, or no spread to estimate a standard error from: no test.
        return Equivalence(margin_pct, float("nan"), False, df_eq, note)
    w = location._WelchRatio(a, b)
    m = margin_pct / 100.0
    p = max(w.p_one_sided(1 - m, "greater"), w.p_one_sided(1 + m, "less"))
    return Equivalence(margin_pct, p, bool(p < alpha), df_eq, note)


def distribution_free(a: np.ndarray, b: np.ndarray, margin_pct: float, alpha: float
                      ) -> tuple[bool | None, str | None]:
    """Is the (1 - 2 alpha) Hodges-Lehmann interval inside +-margin of A's median?"""
    hl = location.hodges_lehmann(a, b, level=1 - 2 * alpha)
    median_a = float(np.median(a))
    if hl.ci.low is None or median_a <= 0:
        return None, hl.ci.note or "A's median is 0 s"
    low, high = 100 * hl.ci.low / median_a, 100 * hl.ci.high / median_a
    return bool(-margin_pct < low and high < margin_pct), (
        f"Hodges-Lehmann {100 * (1 - 2 * alpha):g}% interval [{low:+.2f}%, {high:+.2f}%] "
        "of A's median")
