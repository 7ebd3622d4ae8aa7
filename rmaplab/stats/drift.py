"""Drift against run order, and whether the design interleaved A and B."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Drift:
    tau: float | None
    p: float | None
    n: int


def trend(values: np.ndarray, order: np.ndarray) -> Drift:
    """Kendall's tau of values against run order (monotone drift; scipy)."""
    if len(values) < 3 or len(set(order.tolist())) < 3:
        return Drift(None, None, len(values))
    res = stats.kendalltau(order, values)
    return Drift(float(res.statistic), float(res.pvalue), len(values))


def design(order_a: np.ndarray, order_b: np.ndarray) -> str:
    """'sequential' when one side ran entirely before the other, else 'interleaved'."""
    if len(order_a) == 0 or len(order_b) == 0:
        return "unknown"
    if order_a.max() < order_b.min() or order_b.max() < order_a.min():
        return "sequential"
    return "interleaved"
