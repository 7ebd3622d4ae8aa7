"""The model's counts for a program, and their comparison with a kernel's.

The model replays the interpreter's prelude (its address space at window start),
then the program; the counts compared are the program's alone (after minus after
the prelude), which is what the kernel counted inside its window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rmaplab.model.machine import EventError, Kernel
from rmaplab.traces import validate

# What the host's perf counters (rmaplab.measure.perf) tell apart, plus the two totals.
HOST_KEYS = ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
             "avc_clone", "avc_prepare", "vma_alloc", "mm_forks")
# Model counters that mean the program did something the kernel would refuse.
INVALID = ("syscall_errors", "faults_outside_vma", "faults_not_writable")

Event = dict[str, Any]


class InvalidProgram(Exception):
    """The model refuses the program or reports an operation the kernel would fail."""


def model_counts(program: list[Event], prelude: list[Event], policy: str = "v6.0",
                 merge_rule: str = "uncowed", check: str = "off", thp: bool = True
                 ) -> dict[str, int]:
    """Counters of the model for ``program``'s events after ``prelude``'s.

    The prelude's first event spawns the program's first process, so the program's own
    first event (that spawn) is skipped.  ``thp``: the kernel has transparent huge pages
    (rmaplab.model.machine.Kernel).  Raises InvalidProgram if an event cannot apply
    or the model counts a failed system call or a segfault.
    """
    kernel = Kernel(policy, merge_rule=merge_rule, check=check, thp=thp)
    _apply(kernel, prelude, "prelude")
    before = kernel.counters.as_dict()
    _apply(kernel, program[1:], "program", first=1)
    after = kernel.counters.as_dict()
    bad = {k: after[k] - before[k] for k in INVALID if after[k] != before[k]}
    if bad:
        raise InvalidProgram(", ".join(f"{k} {v}" for k, v in bad.items()))
    out = {k: after[k] - before[k] for k in after}
    out["violations"] = kernel.violation_count
    return out


def _apply(kernel: Kernel, events: Iterable[Event], what: str, first: int = 0) -> None:
    for i, ev in enumerate(events, first):
        try:
            kernel.apply(validate(ev, what, i))
        except EventError as e:
            raise InvalidProgram(f"{what} event {i} ({ev['op']}): {e}") from None


@dataclass
class Comparison:
    """Live and model counts of one program under one policy."""

    policy: str
    live: dict[str, int]
    model: dict[str, int]
    keys: tuple[str, ...]
    differences: dict[str, tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.differences = {k: (self.live[k], self.model[k]) for k in self.keys
                            if self.live[k] != self.model[k]}

    @property
    def agree(self) -> bool:
        return not self.differences

    def describe(self) -> str:
        if self.agree:
            return "agree"
        return ", ".join(f"{k}: kernel {a} model {b}" for k, (a, b) in self.differences.items())


def compare(policy: str, live: dict[str, int], model: dict[str, int],
            keys: Iterable[str]) -> Comparison:
    """Compare on ``keys`` that both sides have (a backend may count fewer)."""
    shared = tuple(k for k in keys if k in live and k in model)
    return Comparison(policy, live, model, shared)


__all__ = ["HOST_KEYS", "Comparison", "InvalidProgram", "compare", "model_counts"]
