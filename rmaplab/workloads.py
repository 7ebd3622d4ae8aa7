"""Micro workloads as event traces: the exact syscalls and faults each one makes.

One definition serves three users: the model tests (hand-computed expectations),
notebook 02 (policies side by side), and the live-kernel validation, whose C
programs (rmaplab/measure/workloads/avwork.c) make the same calls at the same
addresses so that the model's prediction can be compared with perf's counts.

Every region lives inside a PROT_NONE reservation with guard pages so that it
never merges with the program's other mappings.  Pid 1 is the workload process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PAGE = 4096
# The reservation's address (MAP_FIXED_NOREPLACE in the C program): free on an x86-64 host
# and below User-Mode Linux's 512 GiB user address space, so both kernels run it.
BASE = 0x7000000000
HEAP = 0x600000000000          # brk base used by the brk workload's trace

Event = dict[str, Any]


def _page(i: int) -> int:
    return BASE + i * PAGE


def _split_region(pid: int, k: int) -> list[Event]:
    """K VMAs sharing one anon_vma: one RW range, one write, every other page made R."""
    ev: list[Event] = [
        {"op": "mmap", "pid": pid, "start": _page(0), "end": _page(k + 2), "prot": ""},
    ]
    if k == 0:
        return ev
    ev.append({"op": "mprotect", "pid": pid, "start": _page(1), "end": _page(k + 1), "prot": "rw"})
    ev.append({"op": "touch", "pid": pid, "addr": _page(1), "write": True})
    for i in range(2, k + 1, 2):
        ev.append({"op": "mprotect", "pid": pid, "start": _page(i), "end": _page(i + 1),
                   "prot": "r"})
    return ev


def _sep_region(pid: int, k: int) -> list[Event]:
    """K one-page RW VMAs, each written (K anon_vmas), with PROT_NONE pages between them."""
    ev: list[Event] = [
        {"op": "mmap", "pid": pid, "start": _page(0), "end": _page(2 * k + 1), "prot": ""},
    ]
    for i in range(k):
        p = 2 * i + 1
        ev.append({"op": "mprotect", "pid": pid, "start": _page(p), "end": _page(p + 1),
                   "prot": "rw"})
        ev.append({"op": "touch", "pid": pid, "addr": _page(p), "write": True})
    return ev


def _forks(pid: int, n: int, first_child: int = 100) -> list[Event]:
    ev: list[Event] = []
    for j in range(n):
        child = first_child + j
        ev.append({"op": "fork", "pid": pid, "child": child})
        ev.append({"op": "exit", "pid": child})
    return ev


def split(k: int, n: int) -> list[Event]:
    return [{"op": "spawn", "pid": 1}, *_split_region(1, k), *_forks(1, n)]


def sep(k: int, n: int) -> list[Event]:
    return [{"op": "spawn", "pid": 1}, *_sep_region(1, k), *_forks(1, n)]


def chain_alive(k: int, d: int) -> list[Event]:
    """A reaper forks gen0 (which sets up a split region); gen i forks gen i+1 and waits."""
    ev: list[Event] = [{"op": "spawn", "pid": 1}, {"op": "fork", "pid": 1, "child": 10}]
    ev += _split_region(10, k)
    for g in range(d):
        ev.append({"op": "fork", "pid": 10 + g, "child": 11 + g})
    for g in reversed(range(d + 1)):
        ev.append({"op": "exit", "pid": 10 + g})
    return ev


def chain_exited(k: int, d: int) -> list[Event]:
    """Gen i forks gen i+1 and exits at once; gen i+1 forks only after that."""
    ev: list[Event] = [{"op": "spawn", "pid": 1}, {"op": "fork", "pid": 1, "child": 10}]
    ev += _split_region(10, k)
    for g in range(d):
        ev.append({"op": "fork", "pid": 10 + g, "child": 11 + g})
        ev.append({"op": "exit", "pid": 10 + g})
    ev.append({"op": "exit", "pid": 10 + d})
    return ev


def dontfork(k: int, n: int) -> list[Event]:
    """A split region marked MADV_DONTFORK: children get no copy at all."""
    ev = [{"op": "spawn", "pid": 1}, *_split_region(1, k)]
    if k:
        ev.append({"op": "madvise", "pid": 1, "start": _page(1), "end": _page(k + 1),
                   "advice": "dontfork"})
    return ev + _forks(1, n)


def wipeonfork(k: int, n: int) -> list[Event]:
    """Separate VMAs marked MADV_WIPEONFORK; each child writes one page of each."""
    ev = [{"op": "spawn", "pid": 1}, *_sep_region(1, k)]
    for i in range(k):
        p = 2 * i + 1
        ev.append({"op": "madvise", "pid": 1, "start": _page(p), "end": _page(p + 1),
                   "advice": "wipeonfork"})
    for j in range(n):
        child = 100 + j
        ev.append({"op": "fork", "pid": 1, "child": child})
        for i in range(k):
            ev.append({"op": "touch", "pid": child, "addr": _page(2 * i + 1), "write": True})
        ev.append({"op": "exit", "pid": child})
    return ev


def wipeonfork_split(k: int, n: int) -> list[Event]:
    """A split region (K VMAs, one anon_vma) marked MADV_WIPEONFORK; children write its RW pages.

    Before v5.7 dup_mmap() prepared each child VMA's anon_vma at fork, next to the
    parent's neighbours, which are compatible and hold a never-forked anon_vma.
    """
    ev = [{"op": "spawn", "pid": 1}, *_split_region(1, k)]
    if k:
        ev.append({"op": "madvise", "pid": 1, "start": _page(1), "end": _page(k + 1),
                   "advice": "wipeonfork"})
    for j in range(n):
        child = 100 + j
        ev.append({"op": "fork", "pid": 1, "child": child})
        for i in range(1, k + 1, 2):           # the RW pages; the even ones were made R
            ev.append({"op": "touch", "pid": child, "addr": _page(i), "write": True})
        ev.append({"op": "exit", "pid": child})
    return ev


def dontfork_middle(k: int, n: int) -> list[Event]:
    """A split region whose second VMA is MADV_DONTFORK, then N forks.

    The VMA after it has a previous VMA in the parent (vm_prev before v5.7) that the
    child does not get: v5.5's stale vm_prev and wei-intended's child-side prev differ.
    """
    ev = [{"op": "spawn", "pid": 1}, *_split_region(1, k)]
    if k >= 2:
        ev.append({"op": "madvise", "pid": 1, "start": _page(2), "end": _page(3),
                   "advice": "dontfork"})
    return ev + _forks(1, n)


def brk_growth(steps: int, n: int) -> list[Event]:
    """The heap grows one page per step and each new page is written; then N forks."""
    ev: list[Event] = [{"op": "spawn", "pid": 1}, {"op": "brk", "pid": 1, "end": HEAP}]
    for s in range(1, steps + 1):
        ev.append({"op": "brk", "pid": 1, "end": HEAP + s * PAGE})
        ev.append({"op": "touch", "pid": 1, "addr": HEAP + (s - 1) * PAGE, "write": True})
    return ev + _forks(1, n)


def mprotect_merge(k: int, n: int) -> list[Event]:
    """A split region made RW again as a whole: the K VMAs merge back into one."""
    ev = [{"op": "spawn", "pid": 1}, *_split_region(1, k)]
    if k:
        ev.append({"op": "mprotect", "pid": 1, "start": _page(1), "end": _page(k + 1),
                   "prot": "rw"})
    return ev + _forks(1, n)


WORKLOADS: dict[str, Callable[[int, int], list[Event]]] = {
    "split": split, "sep": sep, "chainw": chain_alive, "chainx": chain_exited,
    "dontfork": dontfork, "wipeonfork": wipeonfork, "brk": brk_growth,
    "mprotect-merge": mprotect_merge, "wipeonfork-split": wipeonfork_split,
    "dontfork-middle": dontfork_middle,
}


def numbered(events: list[Event]) -> list[tuple[int, Event]]:
    """Events as (line, event) pairs, validated like a trace file's."""
    from rmaplab.traces import validate

    return [(i, validate(e, "<workload>", i)) for i, e in enumerate(events, 1)]


def policy_table(specs: list[tuple[str, int, int]], policies: list[str]) -> pd.DataFrame:
    """Replay each workload (name, k, n) under each policy: one row per pair."""
    import pandas as pd

    from rmaplab.traces import replay

    rows = []
    for name, k, n in specs:
        events = numbered(WORKLOADS[name](k, n))
        for policy in policies:
            r = replay(events, policy=policy, check="full")
            rows.append({"workload": f"{name} k={k} n={n}", "policy": policy,
                         **{key: r.counters[key] for key in (
                             "anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc",
                             "vma_alloc", "peak_anon_vma", "peak_avc", "peak_bytes_618",
                             "reuse_at_fork", "share_at_fork")},
                         "walk_avcs_mean": r.structure["walk_avcs_mean"],
                         "violations": r.violation_count})
    return pd.DataFrame(rows)
