"""Search for event sequences that break an invariant, and shrink them (Hypothesis).

A small program language over a two-page anonymous region keeps the space
searchable: processes fork, exit, write a page, or change one page's protection.
Hypothesis generates programs, is steered by :func:`danger` (``hypothesis.target``)
towards states where an anon_vma sits in a VMA's chain without being an ancestor
of the VMA's own anon_vma (the precondition 2555283eb40d's message describes),
and shrinks the first program that breaks the invariant to a minimal one.
Nothing here knows the CVE's sequence: the search finds one on its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmaplab.model.machine import EventError, Kernel
from rmaplab.model.structs import AnonVma
from rmaplab.paths import cache_dir

BASE = 0x10000000
PAGES = 2
MAX_PROCS = 8

Op = tuple  # ("fork", i) | ("exit", i) | ("write", i, page) | ("prot", i, page, prot)


def setup_events() -> list[dict[str, Any]]:
    """Process 1 maps the region and writes every page (one anon_vma, the root)."""
    ev: list[dict[str, Any]] = [
        {"op": "spawn", "pid": 1},
        {"op": "mmap", "pid": 1, "start": BASE, "end": BASE + PAGES * 4096, "prot": "rw"},
    ]
    ev += [{"op": "touch", "pid": 1, "addr": BASE + p * 4096, "write": True}
           for p in range(PAGES)]
    return ev


class Interpreter:
    """Turns abstract ops into trace events against live process ids."""

    def __init__(self, live: list[int] | None = None, next_pid: int = 2) -> None:
        self.live = list(live) if live else [1]
        self.next_pid = next_pid

    def event(self, op: Op) -> dict[str, Any] | None:
        kind, i = op[0], op[1]
        pid = self.live[i % len(self.live)]
        if kind == "fork":
            if len(self.live) >= MAX_PROCS:
                return None
            child = self.next_pid
            self.next_pid += 1
            self.live.append(child)
            return {"op": "fork", "pid": pid, "child": child}
        if kind == "exit":
            if len(self.live) == 1:
                return None
            self.live.remove(pid)
            return {"op": "exit", "pid": pid}
        addr = BASE + op[2] * 4096
        if kind == "write":
            return {"op": "touch", "pid": pid, "addr": addr, "write": True}
        return {"op": "mprotect", "pid": pid, "start": addr, "end": addr + 4096, "prot": op[3]}


def to_events(program: list[Op], prefix: list[dict[str, Any]] | None = None
              ) -> list[dict[str, Any]]:
    """The events of ``program`` after the setup (or after ``prefix``, a valid trace)."""
    if prefix is None:
        interp = Interpreter()
        events = setup_events()
    else:
        alive: dict[int, None] = {}
        for ev in prefix:
            if ev["op"] == "spawn":
                alive[ev["pid"]] = None
            elif ev["op"] == "fork":
                alive[ev["child"]] = None
            elif ev["op"] == "exit":
                alive.pop(ev["pid"], None)
        pids = [p for ev in prefix for p in (ev["pid"], ev.get("child", 0))]
        interp = Interpreter(list(alive), max(pids) + 1)
        events = list(prefix)
    for op in program:
        ev = interp.event(op)
        if ev is not None:
            events.append(ev)
    return events


def _is_ancestor(a: AnonVma, b: AnonVma) -> bool:
    while True:
        if a is b:
            return True
        if b.parent is b:
            return False
        b = b.parent


def danger(kernel: Kernel) -> float:
    """How close the state is to a double reuse at the next fork.

    An anon_vma in a VMA's chain that is not an ancestor of the VMA's own anon_vma
    is a leaf the reuse test can pick although VMAs may still use it.  The state is
    more dangerous when such a leaf is reusable now (degree < 2), and most when one
    mm has two VMAs with different anon_vmas and different chains that share it.
    """
    score = 0.0
    for mm in kernel.mms.values():
        leaves: dict[AnonVma, set] = {}
        for vma in mm.vmas:
            own = vma.anon_vma
            if own is None:
                continue
            for avc in vma.chain:
                av = avc.anon_vma
                if av is not own and not _is_ancestor(av, own):
                    score += 1.0 + (2.0 if av.degree < 2 else 0.0)
                    leaves.setdefault(av, set()).add(own)
        for av, owners in leaves.items():
            if len(owners) > 1:
                score += 5.0 + (10.0 if av.degree < 2 else 0.0)
    return score


@contextmanager
def _hypothesis_storage() -> Iterator[None]:
    """Keep Hypothesis's files (it caches constants even without an example database) in
    rmaplab's cache instead of ./.hypothesis/ wherever the search was started."""
    from hypothesis import configuration

    from rmaplab.atomic import writable_error

    home = cache_dir() / "hypothesis"
    if writable_error(home) is not None:
        home = Path(tempfile.gettempdir()) / "rmaplab-hypothesis"
    before = configuration.storage_directory(intent_to_write=False).home_directory
    configuration.set_hypothesis_home_dir(home)
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(before)


@dataclass
class Finding:
    policy: str
    invariant: str
    events: list[dict[str, Any]]
    violation: dict[str, Any]
    examples: int
    seed: int


def replay_events(events: list[dict[str, Any]], policy: str, check: str = "full"
                  ) -> Kernel | None:
    """The kernel after the events, or None if they are not a valid trace."""
    kernel = Kernel(policy, check=check)
    try:
        for ev in events:
            kernel.apply(ev)
    except EventError:
        return None
    return kernel


def run_program(program: list[Op], policy: str, check: str = "full",
                prefix: list[dict[str, Any]] | None = None
                ) -> tuple[Kernel, list[dict[str, Any]]]:
    kernel = Kernel(policy, check=check)
    events = to_events(program, prefix)
    for ev in events:
        kernel.apply(ev)
    return kernel, events


def first_violation(kernel: Kernel | None, invariant: str):
    if kernel is None:
        return None
    return next((v for v in kernel.violations if v.invariant == invariant), None)


def shrink(events: list[dict[str, Any]], policy: str, invariant: str) -> list[dict[str, Any]]:
    """Greedy delta debugging on the concrete events: drop any event (or a process's
    fork with its whole life) while the trace stays valid and still breaks the rule."""
    current = list(events)
    changed = True
    while changed:
        changed = False
        for i in range(len(current) - 1, -1, -1):
            candidates = [current[:i] + current[i + 1:]]
            if current[i]["op"] == "fork":
                child = current[i]["child"]
                candidates.append([e for j, e in enumerate(current)
                                   if j != i and e["pid"] != child and e.get("child") != child])
            for cand in candidates:
                v = first_violation(replay_events(cand, policy, "incremental"), invariant)
                if v is not None:
                    current = cand[: v.event + 1]
                    changed = True
                    break
            if changed:
                break
    return renumber(current)


def renumber(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def find_violation(policy: str = "v5.4", invariant: str = "same-anon_vma-same-chain",
                   budget: int = 60_000, examples_per_seed: int = 5_000, max_ops: int = 30,
                   with_writes: bool = False, prefix: list[dict[str, Any]] | None = None
                   ) -> Finding | None:
    """Search programs (Hypothesis, steered by :func:`danger`) until one breaks
    ``invariant`` under ``policy``; shrink it.  Seeds 0, 1, 2... are tried in turn
    until ``budget`` examples have been spent.  Only fork, exit and one-page
    mprotect are generated unless ``with_writes``: they are the operations that
    change the anon_vma topology; writes only create pages.  With ``prefix`` (a
    trace, e.g. an earlier finding), programs continue it instead of starting afresh.
    """
    from hypothesis import HealthCheck, Phase, given, settings, target
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    idx = st.integers(0, MAX_PROCS - 1)
    choices = [
        st.tuples(st.just("fork"), idx),
        st.tuples(st.just("exit"), idx),
        st.tuples(st.just("prot"), idx, st.integers(0, PAGES - 1), st.sampled_from(["r", "rw"])),
    ]
    if with_writes:
        choices.append(st.tuples(st.just("write"), idx, st.integers(0, PAGES - 1)))
    op = st.one_of(*choices)

    class Found(Exception):
        pass

    state: dict[str, Any] = {}

    def make_probe():
        """A fresh test function per seed (Hypothesis allows one settings object each)."""
        @given(program=st.lists(op, max_size=max_ops))
        def probe(program):
            state["count"] += 1
            kernel, events = run_program(program, policy, check="incremental", prefix=prefix)
            target(danger(kernel), label="non-ancestor anon_vmas in chains")
            hit = first_violation(kernel, invariant)
            if hit is not None:
                state["events"] = events[: hit.event + 1]
                raise Found
        return probe

    spent = 0
    seed = 0
    with _hypothesis_storage():
        while spent < budget:
            state.clear()
            state["count"] = 0
            run = hseed(seed)(settings(
                max_examples=min(examples_per_seed, budget - spent), deadline=None, database=None,
                phases=[Phase.generate, Phase.target, Phase.shrink],
                suppress_health_check=list(HealthCheck))(make_probe()))
            try:
                run()
            except Found:
                pass
            spent += state["count"]
            if "events" in state:
                events = shrink(state["events"], policy, invariant)
                violation = first_violation(replay_events(events, policy), invariant)
                return Finding(policy, invariant, events, violation.as_dict(), spent, seed)
            seed += 1
    return None
