"""mm/rmap.c: anon_vma_prepare, anon_vma_clone, anon_vma_fork, unlink_anon_vmas, anon_vma_merge.

Each method is named after, and takes the steps of, the kernel function in
mm/rmap.c (6.12/6.18, whose structure is unchanged since v5.4; differences
between kernels are in rmaplab.model.policies).  Locking, RCU and -ENOMEM paths
are not modelled: they do not change which objects exist.
"""

from __future__ import annotations

from mypy_extensions import trait

from rmaplab.model.base import KernelBase
from rmaplab.model.structs import (
    NULL_ANON_VMA,
    PAGE_SHIFT,
    VM_ACCESS_FLAGS,
    AnonVma,
    AnonVmaChain,
    ForkLinks,
    Vma,
)


@trait
class RmapMixin(KernelBase):
    # ------------------------------------------------------------ allocation
    def anon_vma_alloc(self, site: str, vma: Vma) -> AnonVma:
        """anon_vma_alloc(): refcount 1, its own root and parent, counters zero.

        A policy may defer the allocation (Policy.defer_anon_vma: ANON_VMA_LAZY): the
        object then stands for the rmap such a kernel keeps without an anon_vma, and
        costs nothing until anon_vma_materialize().
        """
        self.next_id += 1
        av = AnonVma(self.next_id)
        if self.rules.defer_anon_vma and self.policy.defer_anon_vma(vma, site):
            av.deferred = True
            self.counters.anon_vma_deferred += 1
        else:
            self._count_anon_vma(site)
        return av

    def _count_anon_vma(self, site: str) -> None:
        c = self.counters
        c.anon_vma_alloc += 1
        if site == "anon_vma_fork":
            c.anon_vma_fork += 1
        else:
            c.anon_vma_prepare += 1
        c.alloc_anon_vma()

    def anon_vma_free(self, av: AnonVma) -> None:
        """anon_vma_free(): back to the slab.  A page still mapping it would now dangle."""
        if av.pages:
            self.violation("page-mapping-freed",
                           f"{av!r} freed while {av.pages} mapped page(s) still point to it "
                           "(use-after-free on the next rmap walk)")
        av.freed = True
        if not av.deferred:
            self.counters.free_anon_vma()

    def anon_vma_chain_alloc(self, vma: Vma, av: AnonVma, site: str,
                             caller: str | None = None) -> AnonVmaChain:
        """anon_vma_chain_alloc(); not counted while ``av`` is deferred (no AVC exists then)."""
        if not av.deferred:
            self._count_avc(site, caller)
        return AnonVmaChain(vma, av)

    def _count_avc(self, site: str, caller: str | None = None) -> None:
        c = self.counters
        c.avc_alloc += 1
        if site == "anon_vma_clone":
            c.avc_clone += 1
            if caller == "fork":
                c.avc_clone_fork += 1
            elif caller == "split":
                c.avc_clone_split += 1
            elif caller == "merge":
                c.avc_clone_merge += 1
            else:
                c.avc_clone_copy_vma += 1
        elif site == "anon_vma_fork":
            c.avc_fork += 1
        else:
            c.avc_prepare += 1
        c.alloc_avc()

    def anon_vma_chain_free(self, avc: AnonVmaChain) -> None:
        if not avc.anon_vma.deferred:
            self.counters.free_avc()

    def anon_vma_lock_write(self, anon_vma: AnonVma) -> None:
        """anon_vma_lock_write() (or lock_anon_vma_root()): the family's root rwsem.

        Not taken for a deferred anon_vma: the kernel that defers it has nothing to lock."""
        if not anon_vma.deferred and not anon_vma.root.deferred:
            self.counters.anon_vma_lock += 1

    def anon_vma_materialize(self, anon_vma: AnonVma) -> None:
        """Allocate a deferred anon_vma now, with the AVC of every VMA linked to it.

        Counted at the site that allocated them without deferral: a root (a VMA's own,
        from its first write fault) at __anon_vma_prepare, a fork's child at anon_vma_fork.
        """
        if not anon_vma.deferred:
            return
        anon_vma.deferred = False
        site = "__anon_vma_prepare" if anon_vma.parent is anon_vma else "anon_vma_fork"
        self._count_anon_vma(site)
        for _ in anon_vma.avcs:
            self._count_avc(site)
        self.counters.anon_vma_materialized += 1
        self.anon_vma_lock_write(anon_vma)

    @staticmethod
    def anon_vma_chain_link(vma: Vma, avc: AnonVmaChain, av: AnonVma) -> None:
        """anon_vma_chain_assign() + anon_vma_interval_tree_insert()."""
        vma.chain.append(avc)          # list_add(&avc->same_vma, &vma->anon_vma_chain)
        av.avcs.add(avc)               # anon_vma_interval_tree_insert(avc, &av->rb_root)

    def put_anon_vma(self, av: AnonVma) -> None:
        av.refcount -= 1
        if av.refcount == 0:
            self.__put_anon_vma(av)

    def __put_anon_vma(self, av: AnonVma) -> None:
        """__put_anon_vma(): free it, then drop the reference it held on its root."""
        root = av.root
        self.anon_vma_free(av)
        if root is not av:
            root.refcount -= 1
            if root.refcount == 0:
                self.anon_vma_free(root)

    # ------------------------------------------------------------ mm/vma.c helpers
    @staticmethod
    def anon_vma_compatible(a: Vma, b: Vma) -> bool:
        """anon_vma_compatible(): a precedes b, same file, flags equal but for RWX, pgoff linear."""
        return (a.end == b.start and a.file == b.file
                and not ((a.flags ^ b.flags) & ~VM_ACCESS_FLAGS)
                and b.pgoff == a.pgoff + ((b.start - a.start) >> PAGE_SHIFT))

    def reusable_anon_vma(self, old: Vma, a: Vma, b: Vma) -> AnonVma | None:
        """reusable_anon_vma(): old's anon_vma, if compatible and old was never forked.

        The list_is_singular() test refuses an anon_vma "complex" from fork (d0e9fe1758f2).
        """
        if self.anon_vma_compatible(a, b):
            av = old.anon_vma
            if av is not None and len(old.chain) == 1:
                return av
        return None

    def find_mergeable_anon_vma(self, vma: Vma, prev: Vma | None, nxt: Vma | None
                                ) -> AnonVma | None:
        """find_mergeable_anon_vma(): try the next VMA, then the previous one."""
        if nxt is not None:
            av = self.reusable_anon_vma(nxt, vma, nxt)
            if av is not None:
                return av
        if prev is not None:
            return self.reusable_anon_vma(prev, prev, vma)
        return None

    # ------------------------------------------------------------ mm/rmap.c
    def anon_vma_prepare(self, vma: Vma, neighbours: tuple[Vma | None, Vma | None] | None = None
                         ) -> None:
        """anon_vma_prepare(): the inline fast path, then __anon_vma_prepare()."""
        if vma.anon_vma is None:
            self.__anon_vma_prepare(vma, neighbours)

    def __anon_vma_prepare(self, vma: Vma,
                           neighbours: tuple[Vma | None, Vma | None] | None) -> None:
        """__anon_vma_prepare(): attach an anon_vma at the first write fault.

        A compatible never-forked neighbour's anon_vma is reused
        (find_mergeable_anon_vma), else a new root is allocated with a self-parent link;
        the VMA's AVC links it.  ``neighbours`` overrides the VMA's own (prev, next): the
        pre-v5.7 fork path looked at the parent's, through the stale copied links.
        """
        prev, nxt = neighbours if neighbours is not None else self.neighbours(vma)
        anon_vma = self.find_mergeable_anon_vma(vma, prev, nxt)
        if anon_vma is None:
            anon_vma = self.anon_vma_alloc("__anon_vma_prepare", vma)
            anon_vma.num_children += 1            # self-parent link for new root
        else:
            self.counters.prepare_reused_neighbour += 1
        # The kernel allocates the AVC before the look-up; the order changes no count.
        avc = self.anon_vma_chain_alloc(vma, anon_vma, "__anon_vma_prepare")
        self.anon_vma_lock_write(anon_vma)
        self.touched(anon_vma)
        vma.anon_vma = anon_vma
        self.anon_vma_chain_link(vma, avc, anon_vma)
        anon_vma.num_active_vmas += 1

    def anon_vma_clone(self, dst: Vma, src: Vma, caller: str,
                       links: ForkLinks | None = None) -> None:
        """anon_vma_clone(): attach dst to every anon_vma src is attached to.

        Called by __split_vma, copy_vma, dup_anon_vma (merge) and anon_vma_fork.  The
        first three want an exact copy (dst->anon_vma is already set); only from
        anon_vma_fork is dst->anon_vma NULL, and then an existing anon_vma of the chain
        may be reused (policy.may_reuse) to stop the hierarchy growing without bound.
        """
        policy, rules = self.policy, self.rules
        c = self.counters
        if rules.skip_unfaulted and src.anon_vma is None:
            # 7.0 "mm/rmap: skip unfaulted VMAs on anon_vma clone, unlink" (ljs 783e3bdb5f85):
            # return at once; check_anon_vma_clone() warns if such a VMA has a chain.
            if src.chain:
                self.violation("unfaulted-with-chain",
                               f"{src!r} has no anon_vma but {len(src.chain)} AVC(s) "
                               "(VM_WARN_ON_ONCE in check_anon_vma_clone)")
            return
        preset = policy.clone_preset(dst, src, links) if rules.clone_preset else None
        if preset is not None:
            dst.anon_vma = preset
            c.share_at_fork += 1
            if src.mm.forked:
                c.share_at_fork_by_forked += 1
        allocated = c.avc_alloc
        for pavc in src.chain:                    # list_for_each_entry_reverse: oldest first
            anon_vma = pavc.anon_vma
            self.touched(anon_vma)
            avc = self.anon_vma_chain_alloc(dst, anon_vma, "anon_vma_clone", caller)
            self.anon_vma_chain_link(dst, avc, anon_vma)
            if dst.anon_vma is None:
                if src.anon_vma is None:
                    # Where 47b390d23bf8's ``src->anon_vma`` term would decide: counted, so
                    # a replay shows whether it ever does.
                    c.reuse_test_src_null += 1
                    if rules.reuse_needs_src_anon_vma:
                        continue
                if rules.may_reuse and policy.may_reuse(anon_vma, dst, src):
                    dst.anon_vma = anon_vma
                    c.reuse_at_fork += 1
        allocated = c.avc_alloc - allocated
        if allocated:
            c.anon_vma_lock += 1                  # one root for the whole chain
            if not rules.avc_alloc_unlocked:
                # dd34739c03f2: the first AVC is allocated before lock_anon_vma_root(), the
                # others GFP_NOWAIT with the root rwsem held.
                c.avc_alloc_locked += allocated - 1
        if dst.anon_vma is not None:
            dst.anon_vma.num_active_vmas += 1
            self.touched(dst.anon_vma)

    def anon_vma_fork(self, vma: Vma, pvma: Vma, links: ForkLinks) -> None:
        """anon_vma_fork(): attach the child VMA to the parent's anon_vmas, then its own.

        "First, attach the new VMA to the parent VMA's anon_vmas, so rmap can find
        non-COWed pages in child processes."  If anon_vma_clone reused an anon_vma we
        are done; else a new anon_vma, child of pvma's, gets the child's COWed pages.
        """
        if pvma.anon_vma is None:
            return
        policy, rules = self.policy, self.rules
        if rules.before_fork:
            policy.before_fork(self, vma, pvma)
        vma.anon_vma = NULL_ANON_VMA              # "we'll reuse existing or allocate new"
        shared = policy.fork_share(vma, pvma, links) if rules.fork_share else None
        if shared is not None:
            vma.anon_vma = shared
            self.counters.share_at_fork += 1
            if pvma.mm.forked:
                self.counters.share_at_fork_by_forked += 1
            self.anon_vma_clone(vma, links.child_prev, "fork")
            return
        if rules.fork_allocates_first:
            # 7.0 "mm/rmap: eliminate partial anon_vma tear-down in anon_vma_fork()" (ljs
            # 783e3bdb5f85): allocate before cloning, free both if an anon_vma is reused.
            anon_vma = self.anon_vma_alloc("anon_vma_fork", vma)
            avc = self.anon_vma_chain_alloc(vma, anon_vma, "anon_vma_fork")
        self.anon_vma_clone(vma, pvma, "fork", links)
        if vma.anon_vma is not None:              # an existing anon_vma has been reused
            if rules.fork_allocates_first:
                self.put_anon_vma(anon_vma)
                self.anon_vma_chain_free(avc)
            return
        if not rules.fork_allocates_first:
            anon_vma = self.anon_vma_alloc("anon_vma_fork", vma)
            avc = self.anon_vma_chain_alloc(vma, anon_vma, "anon_vma_fork")
        anon_vma.num_active_vmas += 1
        # The root's rwsem locks the whole family; pin the root while we live.
        anon_vma.root = pvma.anon_vma.root
        anon_vma.parent = pvma.anon_vma
        anon_vma.depth = pvma.anon_vma.depth + 1
        anon_vma.root.refcount += 1               # get_anon_vma(anon_vma->root)
        vma.anon_vma = anon_vma                   # where this VMA's COWed pages go
        self.anon_vma_lock_write(anon_vma)
        self.anon_vma_chain_link(vma, avc, anon_vma)
        anon_vma.parent.num_children += 1
        self.touched(anon_vma)

    def unlink_anon_vmas(self, vma: Vma) -> None:
        """unlink_anon_vmas(): detach vma from its anon_vmas; free those left empty.

        The chain is walked newest to oldest so the root is freed last.  Empty
        anon_vmas stay on the list during the first pass and are put in a second
        one (the kernel must drop the root lock before __put_anon_vma).
        """
        if self.rules.skip_unfaulted and vma.anon_vma is None:
            # 7.0 (ljs 783e3bdb5f85): "Unfaulted is a no-op."
            if vma.chain:
                self.violation("unfaulted-with-chain",
                               f"{vma!r} has no anon_vma but {len(vma.chain)} AVC(s) "
                               "(VM_WARN_ON_ONCE in unlink_anon_vmas)")
            return
        if not vma.chain:
            if vma.anon_vma is None:
                return              # nothing chained (most VMAs: file-backed): nothing to do
        else:
            self.anon_vma_lock_write(vma.chain[0].anon_vma)
        empty: list[AnonVmaChain] = []
        for avc in reversed(vma.chain):
            anon_vma = avc.anon_vma
            self.touched(anon_vma)
            anon_vma.avcs.discard(avc)            # anon_vma_interval_tree_remove
            if not anon_vma.avcs:                 # RB_EMPTY_ROOT: free it below
                anon_vma.parent.num_children -= 1
                empty.append(avc)
                continue
            self.anon_vma_chain_free(avc)
        if vma.anon_vma is not None:
            self.touched(vma.anon_vma)            # (on the chain, unless that is broken)
            vma.anon_vma.num_active_vmas -= 1
            vma.anon_vma = None
        for avc in empty:
            anon_vma = avc.anon_vma
            if anon_vma.num_children or anon_vma.num_active_vmas:   # VM_WARN_ON in the kernel
                self.violation("counts-on-free",
                               f"{anon_vma!r} emptied with num_children={anon_vma.num_children}"
                               f" num_active_vmas={anon_vma.num_active_vmas}")
            self.put_anon_vma(anon_vma)
            self.anon_vma_chain_free(avc)
        vma.chain = []

    def anon_vma_merge(self, vma: Vma, nxt: Vma) -> None:
        """anon_vma_merge() (include/linux/rmap.h): ``next`` is removed into ``vma``.

        VM_BUG_ON_VMA(vma->anon_vma != next->anon_vma): the kernel crashes here (the v1
        crash in linux-next, Oct 2019); the model records it and carries on.  Dropping
        next's chain is only safe because same anon_vma implies same chain (d0e9fe1758f2).
        """
        if vma.anon_vma is not nxt.anon_vma:
            self.violation("anon_vma_merge-BUG",
                           f"merging {nxt!r} into {vma!r} with different anon_vmas "
                           "(VM_BUG_ON_VMA, include/linux/rmap.h)")
        self.unlink_anon_vmas(nxt)
