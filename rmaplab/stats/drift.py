"""Drift against run order, and whether the design interleaved A and B.

Every test here assumes the runs of a side are exchangeable; a side whose times
trend with run order (thermal state, page cache, a background job) breaks that.
Per side: Kendall's tau of time against run order (scipy).  Across the two sides:
a stratified Mann-Kendall test on S = S_A + S_B (S = concordant minus discordant
pairs), which sees a weak trend that both sides share: its null distribution is
the convolution of the two sides' (exact by enumerating orders up to
:data:`EXACT_MAX_N` runs, ties included; else normal with the tie-corrected
variance and a continuity correction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

import numpy as np
from scipy import stats

EXACT_MAX_N = 8


@dataclass(frozen=True)
class Drift:
    tau: float | None
    p: float | None
    n: int


def trend(values: np.ndarray, order: np.ndarray) -> Drift:
    """Kendall's tau of values against run order (monotone drift; scipy)."""
    values, order = np.asarray(values, dtype=float), np.asarray(order)
    if len(values) < 3 or len(set(order.tolist())) < 3:
        return Drift(None, None, len(values))
    if np.all(values == values[0]):
        return Drift(0.0, 1.0, len(values))   # constant: no trend (scipy would warn)
    res = stats.kendalltau(order, values)
    return Drift(float(res.statistic), float(res.pvalue), len(values))


def kendall_s(values: np.ndarray) -> int:
    """Concordant minus discordant pairs of (run index, value), values in run order.

    From scipy's tau-b in O(n log n): tau_b = S / sqrt(n0 (n0 - n1)), n0 = n(n-1)/2 and
    n1 the pairs tied in value (run indices never tie).
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2 or np.all(v == v[0]):
        return 0
    _, t = np.unique(v, return_counts=True)
    n0, n1 = n * (n - 1) // 2, int((t * (t - 1) // 2).sum())
    tau = stats.kendalltau(np.arange(n), v).statistic
    return int(round(tau * math.sqrt(n0 * (n0 - n1))))


@lru_cache(maxsize=EXACT_MAX_N)
def _orders(n: int) -> np.ndarray:
    return np.array(list(permutations(range(n))), dtype=np.intp)


def _s_distribution(values: np.ndarray) -> dict[int, int]:
    """Exact null distribution of S over all n! orders of these values (ties included)."""
    v = values[_orders(len(values))]
    s = np.zeros(len(v), dtype=np.int64)
    for i, j in zip(*np.triu_indices(len(values), 1), strict=True):
        s += np.sign(v[:, j] - v[:, i]).astype(np.int64)
    keys, counts = np.unique(s, return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist(), strict=True))


def _s_variance(values: np.ndarray) -> float:
    n = len(values)
    _, t = np.unique(values, return_counts=True)
    return (n * (n - 1) * (2 * n + 5) - float((t * (t - 1) * (2 * t + 5)).sum())) / 18.0


def combined_trend(sides: list[np.ndarray]) -> float | None:
    """Two-sided p of the stratified Mann-Kendall test across sides (values in run order)."""
    sides = [np.asarray(v, dtype=float) for v in sides if len(v) >= 2]
    if not sides:
        return None
    observed = sum(kendall_s(v) for v in sides)
    if all(len(v) <= EXACT_MAX_N for v in sides):
        dist: dict[int, int] = {0: 1}
        for v in sides:
            convolved: dict[int, int] = {}
            for s, c in dist.items():
                for t, k in _s_distribution(v).items():
                    convolved[s + t] = convolved.get(s + t, 0) + c * k
            dist = convolved
        total = sum(dist.values())
        le = sum(c for s, c in dist.items() if s <= observed)
        ge = sum(c for s, c in dist.items() if s >= observed)
        return min(total, 2 * min(le, ge)) / total
    var = sum(_s_variance(v) for v in sides)
    if var == 0:
        return 1.0
    z = max(abs(observed) - 1, 0) / math.sqrt(var)   # S moves in steps of 2: correct by 1
    return float(min(1.0, 2 * stats.norm.sf(z)))


def design(order_a: np.ndarray, order_b: np.ndarray) -> str:
    """'sequential' when one side ran entirely before the other, else 'interleaved'."""
    if len(order_a) == 0 or len(order_b) == 0:
        return "unknown"
    if order_a.max() < order_b.min() or order_b.max() < order_a.min():
        return "sequential"
    return "interleaved"
