"""A/A calibration: split runs of ONE condition into fake A/B groups.

Every apparent change between two halves of identical runs is noise.  Over all
(or many random) splits into n + n runs this gives the distribution of apparent
changes at that n, and the false-positive rate of each test at alpha: the noise
floor against which a real A/B claim made with n runs per side must be read.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

from rmaplab.errors import RmaplabError
from rmaplab.stats import exact, location


def _splits(n_total: int, n: int, max_splits: int, seed: int):
    """Unordered pairs of disjoint index sets of size n (all, or a random sample)."""
    total = math.comb(n_total, n) * math.comb(n_total - n, n) // 2
    if total <= max_splits:
        for a in combinations(range(n_total), n):
            rest = [i for i in range(n_total) if i not in a]
            for b in combinations(rest, n):
                if a < b:  # each unordered pair once
                    yield a, b
        return
    rng = np.random.default_rng(seed)
    for _ in range(max_splits):
        perm = rng.permutation(n_total)
        yield tuple(sorted(perm[:n])), tuple(sorted(perm[n:2 * n]))


def aa_splits(values: np.ndarray, n: int = 3, max_splits: int = 5000, seed: int = 0
              ) -> pd.DataFrame:
    """One row per split: apparent % change (B vs A) and each test's p-value."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 * n:
        raise RmaplabError(f"A/A calibration needs at least {2 * n} runs of one condition, "
                           f"got {len(values)}")
    rows = []
    for ia, ib in _splits(len(values), n, max_splits, seed):
        a, b = values[list(ia)], values[list(ib)]
        ratio = location.ratio_of_means(a, b)
        rows.append({
            "a": ia, "b": ib,
            "pct_change": ratio.pct_change,
            "p_welch": ratio.p,
            "p_mannwhitney": exact.mann_whitney(a, b).p,
            "p_permutation": exact.permutation_means(a, b).p,
        })
    return pd.DataFrame(rows)


def aa_summary(splits: pd.DataFrame, alpha: float = 0.05, threshold_pct: float | None = None
               ) -> dict:
    """False-positive rate of each test, spread of apparent changes, share beyond a threshold."""
    out = {
        "splits": int(len(splits)),
        "abs_change_median_pct": float(splits["pct_change"].abs().median()),
        "abs_change_p95_pct": float(splits["pct_change"].abs().quantile(0.95)),
        "abs_change_max_pct": float(splits["pct_change"].abs().max()),
    }
    for test in ("welch", "mannwhitney", "permutation"):
        out[f"fpr_{test}"] = float((splits[f"p_{test}"] < alpha).mean())
    if threshold_pct is not None:
        out["threshold_pct"] = threshold_pct
        out["share_at_least_threshold"] = float(
            (splits["pct_change"].abs() >= abs(threshold_pct)).mean())
    return out
