"""kernel/fork.c dup_mmap() and mm/mmap.c exit_mmap(): process creation and teardown.

dup_mmap() walks the parent's VMAs in address order.  VM_DONTCOPY VMAs are not
copied; VM_WIPEONFORK VMAs are copied without their anon_vma or pages; every
other VMA goes through anon_vma_fork(tmp, mpnt) and copy_page_range() shares its
anon pages with the child (PageAnonExclusive cleared on both sides).

The order matters for v5.5: until v5.7, vm_area_dup() copied the whole struct, so
while anon_vma_fork() ran, ``tmp->vm_prev`` still pointed to the *parent's*
previous VMA; the child's own previous VMA was linked only afterwards
(research/kernel.md 1.4).  The same stale links made the pre-v5.7 VM_WIPEONFORK
path prepare an anon_vma next to the parent's neighbours.
"""

from __future__ import annotations

from mypy_extensions import trait

from rmaplab.model.base import KernelBase
from rmaplab.model.structs import PAGE_SHIFT, VM_DONTCOPY, VM_WIPEONFORK, ForkLinks, Mm, Vma


@trait
class ForkMixin(KernelBase):
    def dup_mmap(self, mm: Mm, oldmm: Mm) -> None:
        rules = self.rules
        child_prev: Vma | None = None
        parent_prev: Vma | None = None
        forked: list[tuple[Vma, Vma]] | None = [] if self.walks is not None else None
        mm.start_brk, mm.brk = oldmm.start_brk, oldmm.brk
        for mpnt in list(oldmm.vmas):
            src_vm_prev, parent_prev = parent_prev, mpnt
            if mpnt.flags & VM_DONTCOPY:
                continue
            tmp = self.vm_area_dup(mpnt, mm)
            stale_prev = src_vm_prev if rules.stale_vm_prev else None
            if tmp.flags & VM_WIPEONFORK:
                tmp.anon_vma = None
                if rules.prepare_wipeonfork_at_fork:
                    # v5.4: anon_vma_prepare(tmp) with tmp's links still the parent's.
                    idx = self._index(oldmm, mpnt)
                    nxt = oldmm.vmas[idx + 1] if idx + 1 < len(oldmm.vmas) else None
                    self.anon_vma_prepare(tmp, neighbours=(stale_prev, nxt))
            else:
                self.anon_vma_fork(tmp, mpnt, ForkLinks(stale_prev, src_vm_prev, child_prev))
                if tmp.anon_vma is not None:
                    self._sample_fork(tmp)
                    if forked is not None:
                        forked.append((mpnt, tmp))
            mm.vmas.append(tmp)                    # vma_iter_bulk_store, ascending order
            child_prev = tmp
            if not tmp.flags & VM_WIPEONFORK:
                self.copy_page_range(mm, oldmm, mpnt)
        if forked:
            self.walks.at_fork(forked)

    def _sample_fork(self, vma: Vma) -> None:
        c = self.counters
        chain, walk = len(vma.chain), len(vma.anon_vma.avcs)
        c.fork_anon_vmas += 1
        c.fork_chain_sum += chain
        c.fork_walk_sum += walk
        if chain > c.fork_chain_max:
            c.fork_chain_max = chain
        if walk > c.fork_walk_max:
            c.fork_walk_max = walk
        if vma.anon_vma.depth > c.depth_max:
            c.depth_max = vma.anon_vma.depth

    def copy_page_range(self, mm: Mm, oldmm: Mm, vma: Vma) -> None:
        """Share the parent's anon pages of this VMA with the child (COW on both sides)."""
        pages = oldmm.pages
        if not pages or vma.anon_vma is None:
            return
        lo, hi = vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT
        shared = mm.pages
        if hi - lo < len(pages):             # the smaller of the VMA and the parent's pages
            for vpn in range(lo, hi):
                page = pages.get(vpn)
                if page is not None:
                    page.mapcount += 1
                    page.exclusive = False
                    shared[vpn] = page
        else:
            for vpn, page in pages.items():
                if lo <= vpn < hi:
                    page.mapcount += 1
                    page.exclusive = False
                    shared[vpn] = page

    def exit_mmap(self, mm: Mm) -> None:
        """exit_mmap(): unmap every page, free_pgtables() (unlink_anon_vmas), remove_vma()."""
        for page in mm.pages.values():
            self.page_remove_rmap(page)
        mm.pages.clear()
        for vma in mm.vmas:
            self.unlink_anon_vmas(vma)
        for vma in mm.vmas:
            self.vm_area_free(vma)
        mm.vmas = []
