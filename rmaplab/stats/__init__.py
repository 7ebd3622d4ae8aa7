"""Small-n inference for A/B timings: one module per question.

``location`` (effect sizes and intervals), ``exact`` (rank/permutation tests and
their p floor), ``power`` (MDE, runs needed), ``equivalence`` (TOST), ``drift``
(run order), ``calibration`` (A/A noise), ``comparison`` (all of it per metric, Holm
across metrics, verdicts).
"""

from rmaplab.stats.comparison import Comparison, MetricComparison, compare, format_table

__all__ = ["Comparison", "MetricComparison", "compare", "format_table"]
