"""Distribution-free tests for two small samples, and the floor on their p-values.

With 3 runs per side, no rank or permutation test can give p < 0.05 two-sided: the
most extreme of the C(6,3) = 20 splits has probability 1/20 each way, so p >= 0.1.
:func:`min_p` says so before anyone reads a p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Exact enumeration up to this many splits; beyond it, Monte Carlo with its error.
EXACT_LIMIT = 200_000


def min_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p an exact rank/permutation test can reach (no ties)."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value, exact null distribution (scipy)."""
    return float(stats.mannwhitneyu(b, a, alternative="two-sided", method="exact").pvalue)


@dataclass(frozen=True)
class Permutation:
    p: float
    exact: bool
    n_permutations: int
    mc_error: float | None   # standard error of a Monte Carlo p; None when exact


def permutation_means(a: np.ndarray, b: np.ndarray, seed: int = 0,
                      n_resamples: int = 99_999) -> Permutation:
    """Permutation test on mean(B) - mean(A); every split when C(n, n_a) is small."""
    total = math.comb(len(a) + len(b), len(a))
    exact = total <= EXACT_LIMIT

    def diff(x, y, axis=-1):
        return np.mean(y, axis=axis) - np.mean(x, axis=axis)

    res = stats.permutation_test(
        (a, b), diff, permutation_type="independent", alternative="two-sided",
        vectorized=True, n_resamples=total if exact else n_resamples,
        random_state=np.random.default_rng(seed),
    )
    p = float(res.pvalue)
    if exact:
        return Permutation(p, True, total, None)
    return Permutation(p, False, n_resamples, math.sqrt(p * (1 - p) / n_resamples))
