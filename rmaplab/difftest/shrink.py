"""Shrink a program on which a kernel and the model disagree (rmaplab.ddmin).

A candidate is kept when it is valid in the model, runs cleanly on the backend,
and the kernel and the model still disagree on the target counter.  Each
candidate is a live run, so chunked delta debugging keeps their number small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rmaplab import ddmin
from rmaplab.difftest import interpreter
from rmaplab.difftest.backends import Backend
from rmaplab.difftest.compare import Comparison, InvalidProgram, compare, model_counts

Event = dict[str, Any]
# Which disagreement to keep while shrinking when several counters differ: per-site
# anon_vma and AVC counts first (they point at one kernel function), totals last.
TARGET_ORDER = ("anon_vma_fork", "anon_vma_prepare", "avc_fork", "avc_clone_fork",
                "avc_clone_split", "avc_clone_merge", "avc_clone_copy_vma", "avc_clone",
                "avc_prepare", "mm_forks", "vma_alloc", "anon_vma_alloc", "avc_alloc")


def backend_thp(backend: Backend) -> bool:
    """The backend kernel's THP (Backend.thp); a backend written before that attribute
    existed is taken to be this machine's kernel (THP), as the model's default."""
    return getattr(backend, "thp", True)


def target(comparison: Comparison) -> str:
    return min(comparison.differences,
               key=lambda k: TARGET_ORDER.index(k) if k in TARGET_ORDER else len(TARGET_ORDER))


def run_and_compare(events: list[Event], backend: Backend, policy: str,
                    prelude: list[Event] | None = None) -> Comparison | None:
    """Run one program and compare; None if the model or the kernel refuses it.

    ``prelude``: check validity against this prelude before the (costly) live run.
    """
    if prelude is not None:
        try:
            model_counts(events, prelude, policy, backend.merge_rule, thp=backend_thp(backend))
        except InvalidProgram:
            return None
    outcome = backend.run([events], [policy])[policy][0]
    if not outcome.ok:
        return None
    model = model_counts(events, interpreter.prelude(outcome.mappings), policy,
                         backend.merge_rule, thp=backend_thp(backend))
    return compare(policy, outcome.counts, model, backend.keys)


def shrink(events: list[Event], backend: Backend, policy: str, key: str,
           prelude: list[Event], log: Callable[[str], None] | None = None) -> list[Event]:
    """The smallest program (pids renumbered) on which ``key`` still differs."""
    calls = [0]

    def keep(cand: list[Event]) -> list[Event] | None:
        if not cand or cand[0]["op"] != "spawn":
            return None
        calls[0] += 1
        result = run_and_compare(cand, backend, policy, prelude)
        return cand if result is not None and key in result.differences else None

    shrunk = ddmin.renumber(ddmin.shrink(events, keep))
    if log:
        log(f"  shrunk {len(events)} -> {len(shrunk)} events in {calls[0]} runs")
    return shrunk


__all__ = ["backend_thp", "run_and_compare", "shrink", "target"]
