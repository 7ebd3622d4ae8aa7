"""The verdict rules: what one metric's evidence allows us to say.  All of them are here.

The tests are the primary distribution-free test, Mann-Whitney U (its interval is
the Hodges-Lehmann shift; the permutation test on means is reported beside it but
a verdict never picks the smaller of two p-values), and Welch's t-test on the
means, which assumes normally distributed means (untestable with few runs).  Every
p is Holm-adjusted across the metrics compared (k of them).  Rules, first match
wins, then the drift rule may downgrade:

R1 distribution-free  Mann-Whitney (Holm) < alpha                  -> change
R2 floor              Welch (Holm) < alpha, and Mann-Whitney could not reach alpha
                      after Holm: k * p_min >= alpha (p_min: its smallest possible
                      p given n and the ties)                       -> change only under normality
R3 disagree           Welch (Holm) < alpha otherwise               -> inconclusive: tests disagree
R4 equivalence        TOST p < alpha and the distribution-free (1 - 2 alpha)
                      Hodges-Lehmann interval inside +-margin      -> equivalent within +-margin
                      TOST p < alpha without that check            -> no evidence of change
                                                                      (equivalent only under normality)
R5 none               otherwise                                    -> no evidence of change
R6 drift              some side trends with run order: Kendall's test on side A, on
                      side B, or the stratified test on both, smallest p times 3
                      (Bonferroni) < alpha: runs are not exchangeable, which every
                      test above assumes -> a change becomes "inconclusive: runs drift
                      with run order", an equivalence "no evidence of change (runs drift
                      with run order)"
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    alpha: float
    family_size: int                  # metrics in the Holm family
    p_welch_holm: float               # NaN when Welch's test cannot be computed
    p_mannwhitney_holm: float
    p_min: float                      # Mann-Whitney floor given n and ties, unadjusted
    p_tost: float                     # NaN when TOST cannot be computed
    equivalent_df: bool | None        # Hodges-Lehmann check; None when no interval exists
    margin_pct: float
    drift_p: tuple[float | None, ...]  # Kendall p side A, side B, stratified (None: n/a)


@dataclass(frozen=True)
class Verdict:
    text: str
    rule: str            # "R1".."R6", the rule that decided
    kind: str            # "change", "inconclusive", "equivalent" or "none"


def _below(p: float, alpha: float) -> bool:
    return p is not None and not math.isnan(p) and p < alpha


def drift_detected(e: Evidence) -> bool:
    ps = [p for p in e.drift_p if p is not None and not math.isnan(p)]
    return bool(ps) and min(ps) * len(e.drift_p) < e.alpha


def decide(e: Evidence) -> Verdict:
    verdict = _location(e)
    if drift_detected(e):
        if verdict.kind == "change" or verdict.rule in ("R2", "R3"):
            return Verdict("inconclusive: runs drift with run order", "R6", "inconclusive")
        if verdict.kind == "equivalent":
            return Verdict("no evidence of change (runs drift with run order)", "R6", "none")
    return verdict


def _location(e: Evidence) -> Verdict:
    welch = _below(e.p_welch_holm, e.alpha)
    if _below(e.p_mannwhitney_holm, e.alpha):
        if welch or math.isnan(e.p_welch_holm):
            return Verdict("change", "R1", "change")
        return Verdict("change (rank test; Welch's t does not reject)", "R1", "change")
    if welch:
        if min(1.0, e.family_size * e.p_min) >= e.alpha:
            return Verdict("change only under normality", "R2", "change")
        return Verdict("inconclusive: tests disagree", "R3", "inconclusive")
    if _below(e.p_tost, e.alpha):
        margin = f"{e.margin_pct:g}%"
        if e.equivalent_df:
            return Verdict(f"equivalent within +-{margin}", "R4", "equivalent")
        why = ("too few runs for a distribution-free check" if e.equivalent_df is None
               else "the Hodges-Lehmann interval leaves the margin")
        return Verdict(f"no evidence of change (equivalent within +-{margin} only under "
                       f"normality: {why})", "R4", "none")
    return Verdict("no evidence of change", "R5", "none")
