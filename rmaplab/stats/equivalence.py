"""Equivalence (TOST) on log times: is the change inside +-margin?"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.weightstats import ttost_ind


@dataclass(frozen=True)
class Equivalence:
    margin_pct: float
    p: float
    equivalent: bool


def tost(a: np.ndarray, b: np.ndarray, margin_pct: float, alpha: float = 0.05) -> Equivalence:
    """Two one-sided Welch tests that gm(B)/gm(A) lies in [1/(1+m), 1+m]."""
    bound = math.log(1.0 + margin_pct / 100.0)
    p, _, _ = ttost_ind(np.log(b), np.log(a), -bound, bound, usevar="unequal")
    p = float(p)
    return Equivalence(margin_pct, p, bool(p < alpha))
