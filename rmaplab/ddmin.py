"""Delta debugging of event traces: the shortest trace that still shows a failure.

Used by the invariant search (rmaplab.model.search) and the differential test
(rmaplab.difftest.shrink).  Written here because the failures are not Python
exceptions but predicates over whole traces (a model invariant, a kernel/model
disagreement) and removal must respect process lifetimes: a fork is dropped
together with every event of the child and of the child's descendants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
# keep(candidate) -> the trace to continue from (the candidate, or a prefix of it) if it
# still fails, else None.
Keep = Callable[[list[Event]], list[Event] | None]


def descendants(events: list[Event], pid: int) -> set[int]:
    """``pid`` and every process forked, directly or not, from it."""
    family = {pid}
    for ev in events:
        if ev["op"] == "fork" and ev["pid"] in family:
            family.add(ev["child"])
    return family


def _candidates(events: list[Event], i: int, chunk: int, fold: bool) -> list[list[Event]]:
    """Traces without events[i - chunk + 1 .. i]; for a fork, also without the child's
    life, and (``fold``) with the child's events done by its parent instead."""
    first = max(0, i - chunk + 1)
    out = [events[:first] + events[i + 1:]]
    if chunk == 1 and events[i]["op"] == "fork":
        parent, child = events[i]["pid"], events[i]["child"]
        family = descendants(events[i:], child)
        out.append([e for j, e in enumerate(events) if j != i and e["pid"] not in family])
        if fold:
            folded = events[:i]
            for e in events[i + 1:]:
                if e["pid"] == child:
                    if e["op"] == "exit":
                        continue
                    e = {**e, "pid": parent}
                folded.append(e)
            out.append(folded)
    return out


def shrink(events: list[Event], keep: Keep, chunked: bool = True) -> list[Event]:
    """Greedy delta debugging: drop events (and a forked process's whole life) while
    ``keep`` says the trace still fails, until no single event can be dropped.

    ``chunked``: first drop runs of events, halving their length down to one, scanning
    on after each success (fewer ``keep`` calls for long traces, and it also removes
    pairs that are only droppable together), and try folding a forked child into its
    parent.  Otherwise: one event at a time, starting again from the end after each
    success (the invariant search's original order, kept so its findings reproduce).
    """
    current = list(events)
    chunk = max(1, len(current) // 2) if chunked else 1
    while True:
        changed = False
        i = len(current) - 1
        while i >= 0:
            for cand in _candidates(current, i, chunk, chunked):
                kept = keep(cand)
                if kept is not None:
                    current = kept
                    changed = True
                    break
            if changed and not chunked:
                break
            i = min(i - 1, len(current) - 1)
        if chunk == 1 and not changed:
            return current
        chunk = max(1, chunk // 2)


def renumber(events: list[Event]) -> list[Event]:
    """Pids 1, 2, 3... in order of appearance, for a readable trace."""
    mapping: dict[int, int] = {}

    def pid(p: int) -> int:
        if p not in mapping:
            mapping[p] = len(mapping) + 1
        return mapping[p]

    out = []
    for ev in events:
        ev = dict(ev)
        ev["pid"] = pid(ev["pid"])
        if "child" in ev:
            ev["child"] = pid(ev["child"])
        out.append(ev)
    return out


__all__ = ["descendants", "renumber", "shrink"]
