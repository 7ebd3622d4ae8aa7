"""Distribution-free two-sample tests, each with the method it used and its p floor.

Mann-Whitney U and a permutation test on the difference of means.  Each picks the
cheapest method that is exact and says which it used:

- ``exact``: the permutation distribution given the data (for Mann-Whitney, the
  conditional distribution of the rank sum given the ties, in integer arithmetic);
- ``monte-carlo``: random splits, with the standard error of the simulated p;
- ``normal``: the large-sample normal approximation (Mann-Whitney: tie and
  continuity corrected, as scipy computes it; permutation: the exact mean and
  variance of the permutation distribution).

Two-sided p-values are ``min(1, 2 * min(P(T <= t), P(T >= t)))`` throughout, as in
scipy, so identical groups give p = 1.  The *floor* is the smallest p the method
could give for any assignment of these pooled values to the two sides: with 3 + 3
runs and no ties it is 2/C(6,3) = 0.1 whatever the change, and ties raise it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations, islice

import numpy as np
from scipy import stats

# Exact Mann-Whitney while the counts fit in int64 with room to add (C(N, k) < 2**62)
# and the table costs at most this many cell updates.
MW_EXACT_CELLS = 60_000_000
# Exact permutation test by enumerating every split up to this many splits; Monte Carlo
# up to this many pooled runs; beyond, the normal approximation.
PERM_EXACT_SPLITS = 200_000
PERM_MC_MAX_N = 500
PERM_RESAMPLES = 9_999
# Monte Carlo splits are drawn in blocks of at most this many values (bounded memory).
_BLOCK_VALUES = 2_000_000


@dataclass(frozen=True)
class TestResult:
    p: float
    method: str                   # "exact", "monte-carlo" or "normal"
    floor: float                  # smallest p this method can give with these pooled values
    mc_error: float | None = None  # standard error of a Monte Carlo p
    n_resamples: int | None = None
    note: str | None = None


def min_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p an exact rank or permutation test can reach with no ties."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


# --- Mann-Whitney U -------------------------------------------------------------------

def tie_groups(pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, how many times each occurs)."""
    values, counts = np.unique(pooled, return_counts=True)
    return values, counts


def doubled_midranks(counts: np.ndarray) -> np.ndarray:
    """Twice the midrank of each tie group (an integer: 2*start + size + 1)."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return 2 * starts + counts + 1


def _width(counts: np.ndarray, k: int) -> int:
    """One more than the largest doubled rank sum of k runs."""
    per_run = np.repeat(doubled_midranks(counts), counts)
    return int(per_run[len(per_run) - k:].sum()) + 1


def _exact_feasible(counts: np.ndarray, k: int) -> bool:
    if math.comb(int(counts.sum()), k) >= 2**62:
        return False
    cells = int(np.minimum(counts, k).sum() + len(counts)) * (k + 1) * _width(counts, k)
    return cells <= MW_EXACT_CELLS


def rank_sum_distribution(counts: np.ndarray, k: int) -> np.ndarray:
    """Null distribution of the doubled rank sum of k runs drawn from tie groups ``counts``.

    ``out[s]`` is the number of ways (an exact int64 count out of C(N, k)) to choose
    k of the N pooled runs so that twice the sum of their midranks is s.  Built one
    tie group at a time: taking c of a group's t runs contributes c times its doubled
    midrank, in C(t, c) ways.  This is the permutation distribution conditional on
    the ties; scipy's exact method assumes no ties, so it is written here (and checked
    against brute-force enumeration in the tests).  Callers check feasibility first.
    """
    ranks = doubled_midranks(counts)
    width = _width(counts, k)
    table = np.zeros((k + 1, width), dtype=np.int64)
    table[0, 0] = 1
    for size, rank in zip(counts.tolist(), ranks.tolist(), strict=True):
        new = table.copy()
        for c in range(1, min(size, k) + 1):
            shift = c * rank
            if shift >= width:
                break
            new[c:, shift:] += math.comb(size, c) * table[: k + 1 - c, : width - shift]
        table = new
    return table[k]


def _two_sided(le: int, ge: int, total: int) -> float:
    return min(total, 2 * min(le, ge)) / total


def mann_whitney(a: np.ndarray, b: np.ndarray) -> TestResult:
    """Two-sided Mann-Whitney U test of A against B.

    Exact conditional on the ties where feasible (integer counts), else scipy's normal
    approximation with tie and continuity correction.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.concatenate([a, b])
    values, counts = tie_groups(pooled)
    if len(values) == 1:
        return TestResult(1.0, "exact", 1.0, note="all runs are equal")
    # Work with the smaller side: its rank-sum counts are smaller.
    small = a if len(a) <= len(b) else b
    k = len(small)
    ranks = doubled_midranks(counts)
    observed = int(ranks[np.searchsorted(values, small)].sum())
    if _exact_feasible(counts, k):
        dist = rank_sum_distribution(counts, k)
        total = math.comb(len(pooled), k)
        le, ge = int(dist[: observed + 1].sum()), int(dist[observed:].sum())
        support = np.flatnonzero(dist)
        floor = _two_sided(int(dist[support[0]]), int(dist[support[-1]]), total)
        return TestResult(_two_sided(le, ge, total), "exact", floor)
    res = stats.mannwhitneyu(b, a, alternative="two-sided", method="asymptotic",
                             use_continuity=True)
    return TestResult(float(res.pvalue), "normal", _normal_u_floor(counts, len(a), len(b)))


def _normal_u_sigma(counts: np.ndarray, m: int, n: int) -> float:
    """SD of U under H0 with the tie correction (as in scipy.stats.mannwhitneyu)."""
    big_n = m + n
    tie_term = float((counts.astype(float) ** 3 - counts).sum())
    return math.sqrt(m * n / 12.0 * ((big_n + 1) - tie_term / (big_n * (big_n - 1))))


def _normal_u_floor(counts: np.ndarray, m: int, n: int) -> float:
    """Normal-approximation p of the most extreme split these tie groups allow."""
    ranks = doubled_midranks(counts)
    per_run = np.repeat(ranks, counts)   # ascending
    lowest = per_run[:m].sum() / 2 - m * (m + 1) / 2
    highest = per_run[-m:].sum() / 2 - m * (m + 1) / 2
    distance = max(m * n / 2 - lowest, highest - m * n / 2)
    sigma = _normal_u_sigma(counts, m, n)
    return float(min(1.0, 2 * stats.norm.sf((distance - 0.5) / sigma)))


def u_null_cdf(m: int, n: int) -> np.ndarray | None:
    """P(U <= u), u = 0..m*n, for samples of m and n runs without ties; None if not feasible."""
    counts = np.ones(m + n, dtype=np.int64)
    k = min(m, n)
    if not _exact_feasible(counts, k):
        return None
    dist = rank_sum_distribution(counts, k)   # doubled rank sums 2R, R = U + k(k+1)/2
    offset = k * (k + 1)
    u_counts = dist[offset::2]
    return np.cumsum(u_counts) / math.comb(m + n, k)


# --- permutation test on the difference of means ---------------------------------------

def _sum_tolerance(pooled: np.ndarray) -> float:
    """Subset sums that differ by less than this are equal (rounding of a float sum).

    Summing N values in floating point errs by at most about N*eps*sum|x|; a tolerance
    relative to the observed difference (scipy's) vanishes when the difference is near
    zero and splits identical groups into unequal halves.
    """
    return 4.0 * len(pooled) * np.finfo(float).eps * float(np.abs(pooled).sum())


def _split_sums(pooled: np.ndarray, k: int, block: int = 50_000):
    """Sums of every k-subset of ``pooled``, in blocks (never all at once)."""
    combos = combinations(range(len(pooled)), k)
    while True:
        chunk = np.fromiter((i for c in islice(combos, block) for i in c), dtype=np.intp)
        if chunk.size == 0:
            return
        yield pooled[chunk.reshape(-1, k)].sum(axis=1)


def permutation_means(a: np.ndarray, b: np.ndarray, seed: int = 0,
                      n_resamples: int = PERM_RESAMPLES) -> TestResult:
    """Two-sided permutation test of mean(B) - mean(A).

    Given the pooled runs, the difference of means is a decreasing function of A's
    sum, so the test counts splits by A's sum: every split when there are at most
    PERM_EXACT_SPLITS, random splits (Monte Carlo, p = (hits + 1)/(B + 1) per tail)
    up to PERM_MC_MAX_N pooled runs, else the normal approximation with the exact
    mean and variance of A's sum under random splitting.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.concatenate([a, b])
    k, big_n = len(a), len(pooled)
    if np.all(pooled == pooled[0]):
        return TestResult(1.0, "exact", 1.0, note="all runs are equal")
    observed = float(a.sum())
    tol = _sum_tolerance(pooled)
    total = math.comb(big_n, k)
    if total <= PERM_EXACT_SPLITS:
        ordered = np.sort(pooled)
        lo, hi = float(ordered[:k].sum()), float(ordered[big_n - k:].sum())
        le = ge = at_lo = at_hi = 0
        for sums in _split_sums(pooled, k):
            le += int(np.count_nonzero(sums <= observed + tol))
            ge += int(np.count_nonzero(sums >= observed - tol))
            at_lo += int(np.count_nonzero(sums <= lo + tol))
            at_hi += int(np.count_nonzero(sums >= hi - tol))
        return TestResult(_two_sided(le, ge, total), "exact", _two_sided(at_lo, at_hi, total),
                          n_resamples=total)
    if big_n <= PERM_MC_MAX_N:
        rng = np.random.default_rng(seed)
        le = ge = 0
        rows = max(1, _BLOCK_VALUES // big_n)
        done = 0
        while done < n_resamples:
            block = min(rows, n_resamples - done)
            shuffled = rng.permuted(np.broadcast_to(pooled, (block, big_n)), axis=1)
            sums = shuffled[:, :k].sum(axis=1)
            le += int(np.count_nonzero(sums <= observed + tol))
            ge += int(np.count_nonzero(sums >= observed - tol))
            done += block
        p = min(1.0, 2 * min(le + 1, ge + 1) / (n_resamples + 1))
        return TestResult(p, "monte-carlo", min(1.0, 2 / (n_resamples + 1)),
                          mc_error=math.sqrt(p * (1 - p) / n_resamples), n_resamples=n_resamples)
    # Sum of k of N values drawn without replacement: mean k*xbar, variance
    # k(N-k)/(N(N-1)) * sum((x - xbar)^2).
    centred = pooled - pooled.mean()
    var = k * (big_n - k) / (big_n * (big_n - 1)) * float(centred @ centred)
    sd = math.sqrt(var)
    z = (observed - k * pooled.mean()) / sd
    ordered = np.sort(pooled)
    extreme = max(abs(ordered[:k].sum() - k * pooled.mean()),
                  abs(ordered[big_n - k:].sum() - k * pooled.mean())) / sd
    return TestResult(float(min(1.0, 2 * stats.norm.sf(abs(z)))), "normal",
                      float(min(1.0, 2 * stats.norm.sf(extreme))))
