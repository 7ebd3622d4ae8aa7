"""Two-sample inference for A/B timings at any n: one module per question.

``location`` (the change of means and its interval, other effect sizes), ``exact``
(Mann-Whitney and permutation tests, exact where exact is cheap, and their p
floors), ``power`` (MDE, runs needed), ``equivalence`` (TOST), ``drift`` (run
order), ``calibration`` (A/A noise), ``verdict`` (every verdict rule, in one
place), ``comparison`` (all of it per metric, Holm across metrics), ``report``
(the human-readable table), ``sessions`` (one claim measured in several sessions).
"""

from rmaplab.stats.comparison import Comparison, MetricComparison, compare
from rmaplab.stats.report import format_table

__all__ = ["Comparison", "MetricComparison", "compare", "format_table"]
