"""Allocation and free counts by call site, named as ``rmaplab measure`` names them.

``anon_vma_alloc`` = anon_vmas allocated in anon_vma_fork + __anon_vma_prepare;
``avc_alloc`` = anon_vma_chains allocated in anon_vma_fork + anon_vma_clone +
__anon_vma_prepare; ``avc_clone`` is split by the caller of anon_vma_clone
(``avc_clone_fork``, ``_split``, ``_merge``, ``_copy_vma``), as ``perf record -g``
splits it on the live kernel.  Live and peak objects and bytes are tracked for
both the v5.4 and the 6.18 object sizes.  An anon_vma a policy defers is counted
when (and if) it is materialised, with its AVCs.
"""

from __future__ import annotations

from typing import Final

# Slab slot sizes in bytes (research/kernel.md section 5: 6.18 from this machine's BTF
# and /proc/slabinfo; v5.4 computed from the v5.4 struct layouts).
SIZES: Final = {
    "v5.4": {"anon_vma": 88, "avc": 64, "vma": 200},
    "6.18": {"anon_vma": 104, "avc": 64, "vma": 192},
}

EVENT_COUNTERS: Final = (
    "anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "anon_vma_free",
    "avc_alloc", "avc_fork", "avc_clone", "avc_clone_fork", "avc_clone_split",
    "avc_clone_merge", "avc_clone_copy_vma", "avc_prepare", "avc_free",
    "vma_alloc", "vma_free",
    "forks", "mm_forks", "execs", "exits", "spawns",
    "reuse_at_fork", "share_at_fork", "prepare_reused_neighbour",
    # Forks (and the patch's shares) by a process whose own mm came from fork: as merged,
    # 4e4a9eb92133 leaves a forked child no two neighbours sharing an anon_vma.
    "mm_forks_by_forked", "share_at_fork_by_forked",
    # anon_vma_clone() reached its reuse test with src->anon_vma == NULL (47b390d23bf8's term).
    "reuse_test_src_null",
    # is_mergeable_anon_vma() consulted, and how often 965f55dea0e3 and 879bca0a2c4f differ.
    "merge_anon_vma_checks", "merge_rules_disagree",
    "pages_new", "pages_cow", "pages_reused", "faults_outside_vma", "faults_not_writable",
    "syscall_errors",
    # Root rwsem write acquisitions by the rmap functions, and AVCs allocated while holding
    # one (what the 2026 rework moved out of the lock); anon_vmas a policy deferred
    # (Policy.defer_anon_vma) and, of those, how many it allocated later.
    "anon_vma_lock", "avc_alloc_locked", "anon_vma_deferred", "anon_vma_materialized",
    # Sampled at every forked VMA that gets an anon_vma: its chain length, and the size of
    # its anon_vma's tree (the AVCs an rmap walk of a page COWed there visits), and depth.
    "fork_anon_vmas", "fork_chain_sum", "fork_chain_max", "fork_walk_sum", "fork_walk_max",
    "depth_max",
)
# Final module constants: the compiled model reads them without a dict lookup per use.
_V54_AV: Final = SIZES["v5.4"]["anon_vma"]
_V54_AVC: Final = SIZES["v5.4"]["avc"]
_V54_VMA: Final = SIZES["v5.4"]["vma"]
_K618_AV: Final = SIZES["6.18"]["anon_vma"]
_K618_AVC: Final = SIZES["6.18"]["avc"]
_K618_VMA: Final = SIZES["6.18"]["vma"]


# Every counter, in the order as_dict() gives them.
FIELDS: Final = (*EVENT_COUNTERS,
          "live_anon_vma", "live_avc", "live_vma",
          "peak_anon_vma", "peak_avc", "peak_vma",
          "live_bytes_v54", "live_bytes_618", "peak_bytes_v54", "peak_bytes_618")


class Counters:
    __slots__ = FIELDS
    # One int per name of FIELDS (declared for the type checker and the compiler).
    anon_vma_alloc: int
    anon_vma_fork: int
    anon_vma_prepare: int
    anon_vma_free: int
    avc_alloc: int
    avc_fork: int
    avc_clone: int
    avc_clone_fork: int
    avc_clone_split: int
    avc_clone_merge: int
    avc_clone_copy_vma: int
    avc_prepare: int
    avc_free: int
    vma_alloc: int
    vma_free: int
    forks: int
    mm_forks: int
    execs: int
    exits: int
    spawns: int
    reuse_at_fork: int
    share_at_fork: int
    prepare_reused_neighbour: int
    mm_forks_by_forked: int
    share_at_fork_by_forked: int
    reuse_test_src_null: int
    merge_anon_vma_checks: int
    merge_rules_disagree: int
    pages_new: int
    pages_cow: int
    pages_reused: int
    faults_outside_vma: int
    faults_not_writable: int
    syscall_errors: int
    anon_vma_lock: int
    avc_alloc_locked: int
    anon_vma_deferred: int
    anon_vma_materialized: int
    fork_anon_vmas: int
    fork_chain_sum: int
    fork_chain_max: int
    fork_walk_sum: int
    fork_walk_max: int
    depth_max: int
    live_anon_vma: int
    live_avc: int
    live_vma: int
    peak_anon_vma: int
    peak_avc: int
    peak_vma: int
    live_bytes_v54: int
    live_bytes_618: int
    peak_bytes_v54: int
    peak_bytes_618: int

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, 0)

    # One method per object type: this runs for every allocation of a replay, so each
    # updates its live/peak count and both byte totals itself (no helper call).
    def alloc_anon_vma(self) -> None:
        live = self.live_anon_vma + 1
        self.live_anon_vma = live
        if live > self.peak_anon_vma:
            self.peak_anon_vma = live
        v54 = self.live_bytes_v54 + _V54_AV
        k618 = self.live_bytes_618 + _K618_AV
        self.live_bytes_v54 = v54
        self.live_bytes_618 = k618
        if v54 > self.peak_bytes_v54:
            self.peak_bytes_v54 = v54
        if k618 > self.peak_bytes_618:
            self.peak_bytes_618 = k618

    def alloc_avc(self) -> None:
        live = self.live_avc + 1
        self.live_avc = live
        if live > self.peak_avc:
            self.peak_avc = live
        v54 = self.live_bytes_v54 + _V54_AVC
        k618 = self.live_bytes_618 + _K618_AVC
        self.live_bytes_v54 = v54
        self.live_bytes_618 = k618
        if v54 > self.peak_bytes_v54:
            self.peak_bytes_v54 = v54
        if k618 > self.peak_bytes_618:
            self.peak_bytes_618 = k618

    def alloc_vma(self) -> None:
        live = self.live_vma + 1
        self.live_vma = live
        if live > self.peak_vma:
            self.peak_vma = live
        v54 = self.live_bytes_v54 + _V54_VMA
        k618 = self.live_bytes_618 + _K618_VMA
        self.live_bytes_v54 = v54
        self.live_bytes_618 = k618
        if v54 > self.peak_bytes_v54:
            self.peak_bytes_v54 = v54
        if k618 > self.peak_bytes_618:
            self.peak_bytes_618 = k618

    def free_anon_vma(self) -> None:
        self.anon_vma_free += 1
        self.live_anon_vma -= 1
        self.live_bytes_v54 -= _V54_AV
        self.live_bytes_618 -= _K618_AV

    def free_avc(self) -> None:
        self.avc_free += 1
        self.live_avc -= 1
        self.live_bytes_v54 -= _V54_AVC
        self.live_bytes_618 -= _K618_AVC

    def free_vma(self) -> None:
        self.vma_free += 1
        self.live_vma -= 1
        self.live_bytes_v54 -= _V54_VMA
        self.live_bytes_618 -= _K618_VMA

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FIELDS}
