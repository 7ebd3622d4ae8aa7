"""The next patch on trial: a proposed policy against its baseline kernel.

Notebook 06 is a thin layer over these functions, and is the notebook a kernel
developer copies for their own patch: write the patch's rule as a plug-in policy
(README: Plug-in policies), name it and the traces to replay, state the claimed
reductions as :class:`Claim` records, run.  It shows

* the baseline model against the kernel's own counts of each recorded trace
  (``live_counts.json`` beside it), so the counts that follow can be trusted;
* what each candidate allocates on the recorded builds and on the micro workloads,
  and the change against the baseline;
* the invariant search under each candidate (a fresh search, and the continuation of
  CVE-2022-42703's precondition, with the pre-fix rule ``v5.4`` as the control that
  must find it);
* a verdict per claim: where the change measured on each build falls against the
  claimed range.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rmaplab import integrity, traces, workloads
from rmaplab.errors import RmaplabError
from rmaplab.measure.capture import VALIDATED
from rmaplab.model import get_policy
from rmaplab.model.plugins import is_file_spec
from rmaplab.paths import repo_root

# What a candidate is compared on: allocations (by the kernel's tracepoint names), the
# most objects alive at once (the slab footprint a cover letter's "active KB" is), and
# the rmap lock work.
METRICS = ("anon_vma_alloc", "avc_alloc", "vma_alloc", "peak_anon_vma", "peak_avc",
           "peak_bytes_618", "anon_vma_lock", "avc_alloc_locked")
PEAKS = ("peak_anon_vma", "peak_avc", "peak_bytes_618")
COUNTED = tuple(dict.fromkeys((*METRICS, *VALIDATED, "reuse_at_fork", "anon_vma_materialized")))
# The invariant search's CVE-2022-42703 findings under v5.4 (make searches): the double
# reuse, and the use-after-free it leads to.  Minus their last event, they are the
# precondition a candidate is continued from.
CVE_TRACES = {"cve-double-reuse": ("data/traces/search-v5.4-same-chain.jsonl",
                                   "same-anon_vma-same-chain", False),
              "cve-use-after-free": ("data/traces/search-v5.4-uaf.jsonl",
                                     "page-mapping-freed", True)}
CONTROL = "v5.4"


@dataclass(frozen=True)
class Claim:
    """A claimed change of one model counter, in percent of the baseline (low <= high)."""

    policy: str       # the candidate's name (its ``name`` attribute)
    metric: str       # a model counter, e.g. peak_anon_vma (live objects) or anon_vma_alloc
    low: float
    high: float
    what: str         # the claim in its author's words, and where it was made

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise RmaplabError(f"claim on {self.metric}: low {self.low} > high {self.high}")


@dataclass
class Recorded:
    events: list[tuple[int, dict[str, Any]]]
    live: dict[str, int] | None
    preamble: int


def resolve_spec(spec: str) -> str:
    """A plug-in file spec relative to the repository root made absolute (notebooks run
    in notebooks/); everything else unchanged."""
    if is_file_spec(spec):
        path, _, cls = spec.rpartition(":")
        if not Path(path).is_absolute():
            return f"{repo_root() / path}:{cls}"
    return spec


def label(directory: Path) -> str:
    """A trace directory's name without the UTC time stamp `rmaplab trace` puts first."""
    return re.sub(r"^\d{8}T\d{6}Z-", "", directory.name)


def recorded(trace_dir: str | Path) -> dict[str, Recorded]:
    """Every trace.jsonl.gz (or trace.jsonl) under ``trace_dir`` (relative to the
    repository), keyed by :func:`label`, with the live counts and preamble recorded
    beside it when there are any.  Files under data/raw/ are checked against the manifest."""
    root = Path(trace_dir)
    if not root.is_absolute():
        root = repo_root() / root
    found = sorted(p for p in root.rglob("trace.jsonl*") if p.name in ("trace.jsonl",
                                                                         "trace.jsonl.gz"))
    if not found:
        raise RmaplabError("no trace.jsonl(.gz) under this directory", path=root)
    out = {}
    for path in found:
        out[label(path.parent)] = Recorded(traces.load(integrity.checked(path)),
                                           _json(path.parent / "live_counts.json"),
                                           (_json(path.parent / "metadata.json") or {})
                                           .get("preamble_events", 0))
    return out


def _json(path: Path) -> dict | None:
    if not path.exists():
        return None
    return json.loads(integrity.checked(path).read_text())


def _counts(result: dict[str, Any], pre: dict[str, Any] | None) -> dict[str, Any]:
    row = {}
    for m in COUNTED:
        row[m] = result[m] - (pre[m] if pre is not None and m not in PEAKS else 0)
    row["violations"] = result["violation_count"]
    return row


def trace_counts(builds: dict[str, Recorded], policies: list[str], jobs: int | None = None
                 ) -> pd.DataFrame:
    """Each build replayed under each policy (in parallel): the COUNTED counters without
    the preamble (the trace's first events, before the measured command started)."""
    rows = []
    for name, rec in builds.items():
        results = traces.replay_policies(rec.events, policies, check="off", source=name,
                                         jobs=jobs)
        for spec, result in zip(policies, results, strict=True):
            pre = traces.replay(rec.events[: rec.preamble], policy=spec, check="off").as_dict()
            rows.append({"workload": name, "policy": result["policy"], **_counts(result, pre)})
    return pd.DataFrame(rows)


def micro_counts(policies: list[str], k: int, n: int) -> pd.DataFrame:
    """The micro workloads (rmaplab.workloads, K VMAs and N forks) under each policy, with
    every invariant checked after every event."""
    rows = []
    for name, make in workloads.WORKLOADS.items():
        events = workloads.numbered(make(k, n))
        for spec in policies:
            result = traces.replay(events, policy=spec, check="full").as_dict()
            rows.append({"workload": f"micro:{name}", "policy": result["policy"],
                         **_counts(result, None)})
    return pd.DataFrame(rows)


def validation(builds: dict[str, Recorded], counts: pd.DataFrame, baseline: str
               ) -> pd.DataFrame:
    """The baseline's counts of each build (from :func:`trace_counts`) against the
    kernel's own counts of the same run, where they were recorded."""
    base = counts[counts.policy == get_policy(baseline).name].set_index("workload")
    rows = []
    for name, rec in builds.items():
        if rec.live is None:
            continue
        for key in VALIDATED:
            model, live = int(base.loc[name, key]), rec.live.get(key, 0)
            rows.append({"workload": name, "counter": key, "live": live, "model": model,
                         "diff_pct": _pct(model, live)})
    return pd.DataFrame(rows)


def changes(counts: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Percent change of every metric against the baseline, per workload and candidate."""
    name = get_policy(baseline).name
    base = counts[counts.policy == name].set_index("workload")
    rows = []
    for _, r in counts[counts.policy != name].iterrows():
        b = base.loc[r.workload]
        rows.append({"workload": r.workload, "policy": r.policy,
                     **{m: _pct(r[m], b[m]) for m in METRICS}})
    return pd.DataFrame(rows)


def _pct(value: float, base: float) -> float:
    if base == 0:
        return 0.0 if value == 0 else float("inf")
    return 100.0 * (value - base) / base


def verdict(change: float, low: float, high: float) -> str:
    """Where a measured change (percent) falls against a claimed range [low, high]."""
    if low <= change <= high:
        return "reproduced"
    claimed_cut = high <= 0
    if claimed_cut and change < low:
        return "exceeded"
    if claimed_cut and change >= 0 > low:
        return "no reduction"
    if not claimed_cut and low >= 0 and change > high:
        return "exceeded"
    if not claimed_cut and low >= 0 and change <= 0:
        return "no increase"
    return "not reached"


def claim_verdicts(chg: pd.DataFrame, claims: list[Claim], workloads: list[str]
                   ) -> pd.DataFrame:
    """One row per claim and workload: the measured change and its verdict."""
    rows = []
    for c in claims:
        for w in workloads:
            hit = chg[(chg.policy == c.policy) & (chg.workload == w)]
            if hit.empty:
                raise RmaplabError(f"claim on {c.policy!r}: no counts for it on {w!r}",
                                   hint="claims name a candidate by its policy name")
            value = float(hit.iloc[0][c.metric])
            rows.append({"policy": c.policy, "metric": c.metric, "workload": w,
                         "claimed": f"{c.low:+g}%" if c.low == c.high
                         else f"{c.low:+g}% .. {c.high:+g}%",
                         "measured_pct": value, "verdict": verdict(value, c.low, c.high),
                         "claim": c.what})
    return pd.DataFrame(rows)


def searches(policies: list[str], budget: int, continuation_budget: int,
             jobs: int | None = None) -> pd.DataFrame:
    """The invariant search under each policy, and under the control (v5.4).

    ``fresh``: same-anon_vma-same-chain from scratch (``budget`` examples, fork, exit and
    mprotect).  ``cve-double-reuse`` and ``cve-use-after-free``: continuations (of
    ``continuation_budget`` examples) of CVE-2022-42703's two findings minus their last
    event; the control must find both, a candidate that does not reintroduce the bug
    neither.  ``jobs``: worker processes of each search (default one per CPU; the same
    findings for any number).
    """
    from rmaplab.model.search import find_violation

    runs = [("fresh", "same-anon_vma-same-chain", budget, None, False)]
    for search, (path, invariant, writes) in CVE_TRACES.items():
        prefix = [ev for _, ev in traces.load(repo_root() / path)][:-1]
        runs.append((search, invariant, continuation_budget, prefix, writes))
    rows = []
    for spec in [CONTROL, *[p for p in policies if p != CONTROL]]:
        name = get_policy(spec).name
        for search, invariant, n, pre, writes in runs:
            if spec == CONTROL and search == "fresh":
                continue                    # the control's fresh search is notebook 02's
            found = find_violation(spec, invariant, budget=n, with_writes=writes, prefix=pre,
                                   jobs=jobs)
            rows.append({"policy": name, "search": search, "invariant": invariant,
                         "budget": n, "found": found is not None,
                         "examples": found.examples if found else n,
                         "events": len(found.events) if found else None,
                         "detail": found.violation["detail"] if found else ""})
    return pd.DataFrame(rows)


__all__ = ["CONTROL", "CVE_TRACES", "METRICS", "Claim", "Recorded", "changes", "claim_verdicts",
           "label", "micro_counts", "recorded", "resolve_spec", "searches", "trace_counts",
           "validation", "verdict"]
