"""The anon_vma reuse rule at fork of each kernel era.  Names are an interface.

A policy is data plus the few small methods where kernels differ; the algorithm
itself (rmaplab.model.rmap) is shared and follows mm/rmap.c step by step.  The
interface (:class:`Policy`) is also what a plug-in implements (rmaplab.model.plugins;
examples/policies/ holds the 2026 proposals written that way).

==============  ========================================================================
``no-reuse``    5beb49305251 (2.6.34): every forked VMA gets a new anon_vma
``v5.4``        7a3ef208e662 (3.19): reuse an anon_vma of src's chain with degree < 2
``v5.5``        v5.4 + 4e4a9eb92133 as merged: the child VMA takes ``dst->vm_prev``'s
                anon_vma, which on v5.5/v5.6 is the *parent's* prev (stale copy)
``wei-intended`` v5.4 + the patch as described, in Konstantin Khlebnikov's Jan 2020 form:
                share the child prev's anon_vma when its parent is pvma's anon_vma
``v6.0``        2555283eb40d (CVE-2022-42703 fix): num_children < 2 && num_active_vmas == 0
==============  ========================================================================

Two further policies separate what Wei Yang's patch adds from what the ``degree``
rule under it already broke: each is its 2019 counterpart with ``degree < 2``
replaced by 2555283eb40d's counters and nothing else changed (same stale
``vm_prev``, same eager WIPEONFORK prepare, same merge rule):

======================  ================================================================
``v6.0+4e4a9eb``        ``v5.5`` on the v6.0 counters
``v6.0+wei-intended``   ``wei-intended`` on the v6.0 counters
======================  ================================================================

Beside the reuse rule, a policy carries the rules of its era that change which
objects exist: the VMA merge rule (``merge_rule``), whether anon_vma_clone()'s
reuse test requires ``src->anon_vma`` (47b390d23bf8), and the two pre-v5.7
dup_mmap quirks.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from rmaplab.errors import RmaplabError
from rmaplab.model.structs import AnonVma, ForkLinks, Vma

if TYPE_CHECKING:
    from rmaplab.model.machine import Kernel


class Policy:
    """What a kernel era (or a proposed patch) does differently in the anon rmap.

    Everything else is the 6.18 kernel of rmaplab.model.  Subclass this (a built-in
    policy, or a plug-in: README "Plug-in policies"; usually ``V60``, whose data are
    6.18's) and override only what the kernel you model changes; each hook is called at
    the one place in mm/rmap.c or kernel/fork.c where kernels differ, and its default
    is what 6.18 does.  One
    instance serves every replay of a process: keep per-replay state on the model's
    objects (vma, anon_vma), never on ``self``.

    Data (read where noted):

    ``merge_rule``                  the VMA merge rule of the era, used when a replay names
                                    none ("singular" here, "uncowed" in ``V60``)
    ``reuse_needs_src_anon_vma``    anon_vma_clone: the reuse test also needs src->anon_vma
                                    (47b390d23bf8, v5.5 ..)
    ``reuse_rule``                  informative: "none", "degree" or "counters"
    ``prepare_wipeonfork_at_fork``  dup_mmap: prepare an anon_vma for a VM_WIPEONFORK VMA at
                                    fork, next to the stale neighbours (< v5.7)
    ``stale_vm_prev``               dup_mmap: the child VMA's vm_prev is the parent's (< v5.7)
    ``fork_allocates_first``        anon_vma_fork: allocate the anon_vma and its AVC before
                                    anon_vma_clone, free both if an anon_vma was reused (7.0)
    ``avc_alloc_unlocked``          anon_vma_clone: allocate every AVC before taking the root
                                    lock (7.0); before, all but the first are GFP_NOWAIT under it
    ``skip_unfaulted``              anon_vma_clone / unlink_anon_vmas: a VMA without anon_vma
                                    is a no-op, and a chain on one is a kernel warning (7.0)

    Hooks (called in this order of a VMA's life):

    ``defer_anon_vma(vma, site)``   __anon_vma_prepare (first write fault) and anon_vma_fork,
                                    before a new anon_vma is allocated: True defers it (the
                                    kernel keeps the rmap without one) until ``materialize``
    ``before_fork(kernel, vma, pvma)`` top of anon_vma_fork, pvma has an anon_vma: may change
                                    pvma's state first (``kernel.anon_vma_materialize``)
    ``fork_share(vma, pvma, links)`` anon_vma_fork: an anon_vma to share instead of cloning pvma
    ``clone_preset(dst, src, links)`` top of anon_vma_clone: an anon_vma for dst before the loop
    ``may_reuse(anon_vma, dst, src)`` anon_vma_clone from fork, per anon_vma of src's chain:
                                    may the child VMA take it as its own?
    """

    name = ""
    commit = ""
    summary = ""
    # Which test decides reuse in anon_vma_clone(): "none", "degree" (7a3ef208e662) or
    # "counters" (2555283eb40d); informative, may_reuse() is what runs.
    reuse_rule = "none"
    # The anon VMA merge rule of the era (rmaplab.model.vma): "singular" is 965f55dea0e3
    # ("mmap: avoid merging cloned VMAs", v3.0 .. v6.15), "uncowed" is 879bca0a2c4f
    # (v6.16 ..).  Used when no merge rule is given explicitly.
    merge_rule = "singular"
    # 47b390d23bf8 ("mm/rmap.c: don't reuse anon_vma if we just want a copy", Wei Yang's
    # v4 1/2, v5.5, never reverted) added ``src->anon_vma`` to anon_vma_clone()'s reuse
    # test.  v5.4 and older test only ``!dst->anon_vma``.
    reuse_needs_src_anon_vma = True
    # Set on plug-ins (rmaplab.model.plugins): the spec they were loaded from, and the
    # files of their code (to name them in errors).
    spec: str | None = None
    plugin_files: frozenset[str] | None = None
    # Kernels before v5.7 prepared an anon_vma for a VM_WIPEONFORK VMA at fork time,
    # looking at the stale (parent's) neighbours; "mm: don't prepare anon_vma if vma
    # has VM_WIPEONFORK" (v5.7) made it lazy.
    prepare_wipeonfork_at_fork = True
    # Kernels before v5.7 left the parent's vm_prev in the child VMA during anon_vma_fork.
    stale_vm_prev = True
    fork_allocates_first = False
    avc_alloc_unlocked = False
    skip_unfaulted = False

    def may_reuse(self, anon_vma: AnonVma, dst: Vma, src: Vma) -> bool:
        """anon_vma_clone(): may ``dst`` (forked from ``src``) reuse ``anon_vma``?"""
        return False

    def clone_preset(self, dst: Vma, src: Vma, links: ForkLinks | None) -> AnonVma | None:
        """Hook at the top of anon_vma_clone() (only 4e4a9eb92133 uses it)."""
        return None

    def fork_share(self, vma: Vma, pvma: Vma, links: ForkLinks) -> AnonVma | None:
        """Hook at the top of anon_vma_fork() (only the 'as intended' form uses it)."""
        return None

    def defer_anon_vma(self, vma: Vma, site: str) -> bool:
        """Defer the anon_vma ``site`` ("__anon_vma_prepare" or "anon_vma_fork") would
        allocate for ``vma``?  No kernel before 2026 does."""
        return False

    def before_fork(self, kernel: Kernel, vma: Vma, pvma: Vma) -> None:
        """Hook at the top of anon_vma_fork(vma, pvma) when pvma has an anon_vma."""
        return None


class NoReuse(Policy):
    name = "no-reuse"
    commit = "5beb49305251"
    summary = "every forked VMA with an anon_vma gets a new one (2.6.34 .. 3.18)"
    # 965f55dea0e3 is v3.0: the merge rule of 3.0 .. 3.18, most of this policy's era.
    reuse_needs_src_anon_vma = False


class V54(Policy):
    name = "v5.4"
    commit = "7a3ef208e662"
    summary = "reuse an ancestor in src's chain with degree < 2 (3.19 .. v5.4)"
    reuse_needs_src_anon_vma = False      # 47b390d23bf8 came with v5.5
    reuse_rule = "degree"

    def may_reuse(self, anon_vma: AnonVma, dst: Vma, src: Vma) -> bool:
        # 7a3ef208e662 "mm: prevent endless growth of anon_vma hierarchy": "Reuse existing
        # anon_vma if its degree lower than two, that means it has no vma and only one
        # anon_vma child."  degree mixes VMAs and children; 2555283eb40d shows why that is
        # ambiguous once reuse itself puts leaves into chains.
        return anon_vma is not src.anon_vma and anon_vma.degree < 2


class V55(V54):
    name = "v5.5"
    commit = "4e4a9eb92133"
    summary = "v5.4 + Wei Yang's patch as merged (stale vm_prev: children share the parent's anon_vma)"
    reuse_needs_src_anon_vma = True       # 47b390d23bf8, merged with it in v5.5

    def clone_preset(self, dst: Vma, src: Vma, links: ForkLinks | None) -> AnonVma | None:
        # 4e4a9eb92133, at the top of anon_vma_clone():
        #   prev = dst->vm_prev, pprev = src->vm_prev;
        #   if (!dst->anon_vma && src->anon_vma && pprev && pprev->anon_vma == src->anon_vma)
        #           dst->anon_vma = prev->anon_vma;
        # During dup_mmap dst->vm_prev is the stale copy of src->vm_prev, so prev == pprev
        # and the child VMA takes the PARENT's anon_vma (Konstantin Khlebnikov, Jan 2020).
        if dst.anon_vma is not None or src.anon_vma is None or links is None:
            return None
        pprev, prev = links.src_vm_prev, links.dst_vm_prev
        if pprev is not None and pprev.anon_vma is src.anon_vma:
            # Konstantin's ack noted prev is never NULL here; with the stale copy it is pprev.
            return prev.anon_vma if prev is not None else None
        return None


class WeiIntended(V54):
    name = "wei-intended"
    commit = "157839239609.694.10268055713935919822.stgit@buzz"
    summary = ("v5.4 + the patch as described: a child VMA shares its child-side prev's "
               "anon_vma when both were forked from one parent anon_vma")
    reuse_needs_src_anon_vma = True       # Khlebnikov's fix was written against v5.5-rc

    def fork_share(self, vma: Vma, pvma: Vma, links: ForkLinks) -> AnonVma | None:
        # Konstantin Khlebnikov, "mm/rmap: fix and simplify reusing mergeable anon_vma as
        # parent when fork" (v2 1/2, Jan 2020, not merged): anon_vma_fork(vma, pvma, prev)
        #   if (prev && prev->anon_vma && prev->anon_vma->parent == pvma->anon_vma)
        #           vma->anon_vma = prev->anon_vma; return anon_vma_clone(vma, prev);
        prev = links.child_prev
        if prev is not None and prev.anon_vma is not None \
                and prev.anon_vma.parent is pvma.anon_vma:
            return prev.anon_vma
        return None


class V60(Policy):
    name = "v6.0"
    commit = "2555283eb40d"
    summary = "reuse only an anon_vma with num_children < 2 and num_active_vmas == 0 (v6.0 ..)"
    prepare_wipeonfork_at_fork = False
    stale_vm_prev = False
    merge_rule = "uncowed"                # what this machine's 6.18 kernel runs
    reuse_rule = "counters"

    def may_reuse(self, anon_vma: AnonVma, dst: Vma, src: Vma) -> bool:
        # 2555283eb40d "mm/rmap: Fix anon_vma->degree ambiguity leading to double-reuse":
        # "Reuse existing anon_vma if it has no vma and only one anon_vma child."
        # The root is never reused: its self-parent link keeps num_children >= 2 once it
        # has a child.
        return anon_vma.num_children < 2 and anon_vma.num_active_vmas == 0


class V60With4e4a9eb(V55):
    name = "v6.0+4e4a9eb"
    commit = "4e4a9eb92133 on 2555283eb40d"
    summary = "v5.5 with the v6.0 counters in place of degree (the merged patch alone)"
    reuse_rule = "counters"
    may_reuse = V60.may_reuse


class V60WithWeiIntended(WeiIntended):
    name = "v6.0+wei-intended"
    commit = "Khlebnikov's form on 2555283eb40d"
    summary = "wei-intended with the v6.0 counters in place of degree (the patch as meant, alone)"
    reuse_rule = "counters"
    may_reuse = V60.may_reuse


# The five policies of the design (kernels that ran, or the patch as described); then the
# two that decompose the patch's safety from the degree rule's.
KERNEL_POLICIES = ("no-reuse", "v5.4", "v5.5", "wei-intended", "v6.0")
POLICIES: dict[str, Policy] = {p.name: p for p in (
    NoReuse(), V54(), V55(), WeiIntended(), V60(), V60With4e4a9eb(), V60WithWeiIntended())}
LIVE_POLICY = "v6.0"   # what this machine's 6.18 kernel runs


def get_policy(spec: str | Policy) -> Policy:
    """A built-in policy by name, or a plug-in (rmaplab.model.plugins) by its spec."""
    if isinstance(spec, Policy):
        return spec
    policy = POLICIES.get(spec)
    if policy is not None:
        return policy
    from rmaplab.model import plugins

    return plugins.load(spec)


def variant(name: str, label: str, **rules: object) -> Policy:
    """Policy ``name`` with some of its rule attributes changed, e.g. without 47b390d23bf8:
    ``variant("v5.5", "v5.5 without 47b390d23bf8", reuse_needs_src_anon_vma=False)``."""
    base = get_policy(name)
    unknown = [k for k in rules if not hasattr(Policy, k)]
    if unknown:
        raise RmaplabError(f"not a policy rule: {', '.join(unknown)}")
    policy = copy.copy(base)
    policy.name = label
    for key, value in rules.items():
        setattr(policy, key, value)
    return policy
