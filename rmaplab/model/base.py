"""What the per-file parts of the model kernel share.

:class:`rmaplab.model.machine.Kernel` is composed of one part per kernel file:
``RmapMixin`` (mm/rmap.c), ``VmaMixin`` (mm/vma.c, mm/mmap.c), ``FaultMixin``
(mm/memory.c) and ``ForkMixin`` (kernel/fork.c).  A function of one file calls
functions of another (do_munmap calls unlink_anon_vmas, the fault handler calls
anon_vma_prepare), as in the kernel.  ``KernelBase`` declares that shared state and
those calls, so that each part type-checks on its own and can be compiled (the fast
path: ``rmaplab.model.fastpath``).  The stubs below are never what runs: every one is
implemented by the part named beside it, which comes first in Kernel's MRO.

The parts are traits (``mypy_extensions.trait``): for the interpreter plain classes,
for the compiler classes that a compiled class may inherit several of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy_extensions import trait

if TYPE_CHECKING:
    from rmaplab.model.counters import Counters
    from rmaplab.model.observe import WalkSamples
    from rmaplab.model.policies import Policy
    from rmaplab.model.structs import AnonVma, ForkLinks, Mm, Page, Vma


class PolicyRules:
    """A policy's data, and which of its hooks it overrides, read once for a Kernel.

    The compiled model tests these native fields on every call instead of looking up an
    interpreted object's attributes (policies stay interpreted: plug-ins subclass them),
    and does not call a hook the policy leaves at Policy's default, which does nothing.
    A policy serves a whole replay unchanged (Policy's docstring), so reading it once is
    reading it each time.
    """

    __slots__ = ("reuse_needs_src_anon_vma", "prepare_wipeonfork_at_fork", "stale_vm_prev",
                 "fork_allocates_first", "avc_alloc_unlocked", "skip_unfaulted",
                 "may_reuse", "clone_preset", "fork_share", "defer_anon_vma", "before_fork")

    def __init__(self, policy: Policy) -> None:
        self.reuse_needs_src_anon_vma = bool(policy.reuse_needs_src_anon_vma)
        self.prepare_wipeonfork_at_fork = bool(policy.prepare_wipeonfork_at_fork)
        self.stale_vm_prev = bool(policy.stale_vm_prev)
        self.fork_allocates_first = bool(policy.fork_allocates_first)
        self.avc_alloc_unlocked = bool(policy.avc_alloc_unlocked)
        self.skip_unfaulted = bool(policy.skip_unfaulted)
        # Hooks: True if the policy has its own.
        self.may_reuse = _overrides(policy, "may_reuse")
        self.clone_preset = _overrides(policy, "clone_preset")
        self.fork_share = _overrides(policy, "fork_share")
        self.defer_anon_vma = _overrides(policy, "defer_anon_vma")
        self.before_fork = _overrides(policy, "before_fork")


def _overrides(policy: Policy, hook: str) -> bool:
    from rmaplab.model.policies import Policy as Default

    return (hook in getattr(policy, "__dict__", {})
            or getattr(type(policy), hook) is not getattr(Default, hook))


@trait
class KernelBase:
    # The state of the model kernel (set by Kernel.__init__).
    policy: Policy
    rules: PolicyRules
    counters: Counters
    next_id: int
    merge_rule: str
    thp: bool
    checking: bool
    walks: WalkSamples | None

    # machine: reporting
    def violation(self, invariant: str, detail: str) -> None:
        raise NotImplementedError

    def touched(self, anon_vma: AnonVma) -> None:
        raise NotImplementedError

    # rmap (mm/rmap.c)
    def anon_vma_prepare(self, vma: Vma, neighbours: tuple[Vma | None, Vma | None] | None = None
                         ) -> None:
        raise NotImplementedError

    def anon_vma_clone(self, dst: Vma, src: Vma, caller: str,
                       links: ForkLinks | None = None) -> None:
        raise NotImplementedError

    def anon_vma_fork(self, vma: Vma, pvma: Vma, links: ForkLinks) -> None:
        raise NotImplementedError

    def unlink_anon_vmas(self, vma: Vma) -> None:
        raise NotImplementedError

    def anon_vma_merge(self, vma: Vma, nxt: Vma) -> None:
        raise NotImplementedError

    # vma (mm/vma.c, mm/mmap.c)
    def neighbours(self, vma: Vma) -> tuple[Vma | None, Vma | None]:
        raise NotImplementedError

    def find_vma(self, mm: Mm, addr: int) -> Vma | None:
        raise NotImplementedError

    @staticmethod
    def vmas_from(mm: Mm, addr: int) -> int:
        raise NotImplementedError

    @staticmethod
    def _index(mm: Mm, vma: Vma) -> int:
        raise NotImplementedError

    def vm_area_dup(self, orig: Vma, mm: Mm | None = None) -> Vma:
        raise NotImplementedError

    def vm_area_free(self, vma: Vma) -> None:
        raise NotImplementedError

    def expand_downwards(self, vma: Vma, addr: int) -> None:
        raise NotImplementedError

    # memory (mm/memory.c)
    def page_remove_rmap(self, page: Page) -> None:
        raise NotImplementedError

    def zap_range(self, mm: Mm, start: int, end: int) -> None:
        raise NotImplementedError
