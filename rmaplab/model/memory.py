"""mm/memory.c: the page faults that create anon pages, and zapping them.

Only anonymous pages are modelled (file pages carry no anon_vma).  A write fault
with no page, or on a page shared with another process, calls anon_vma_prepare()
and maps a new exclusive page whose ``mapping`` is vma->anon_vma
(do_anonymous_page, do_cow_fault, wp_page_copy).  A write to a page mapped once
but not marked exclusive reuses it and moves its rmap to vma->anon_vma
(wp_can_reuse_anon_folio -> folio_move_anon_rmap).  Read faults map the zero page
or file pages: nothing anonymous happens.
"""

from __future__ import annotations

from mypy_extensions import trait

from rmaplab.model.base import KernelBase
from rmaplab.model.structs import (
    PAGE_SHIFT,
    STACK_GUARD_GAP,
    VM_GROWSDOWN,
    VM_SHARED,
    VM_WRITE,
    AnonVma,
    Mm,
    Page,
)


@trait
class FaultMixin(KernelBase):
    def _new_page(self, mm: Mm, vpn: int, anon_vma: AnonVma, index: int) -> Page:
        self.next_id += 1
        page = Page(self.next_id, anon_vma, index)
        anon_vma.pages += 1
        mm.pages[vpn] = page
        return page

    def page_remove_rmap(self, page: Page) -> None:
        """One PTE less; the page is freed with its last mapping."""
        page.mapcount -= 1
        if page.mapcount == 0:
            page.mapping.pages -= 1

    def handle_mm_fault(self, mm: Mm, addr: int, write: bool) -> None:
        vma = self.find_vma(mm, addr)
        if vma is None:
            vma = self._stack_below(mm, addr)
            if vma is None:
                self.counters.faults_outside_vma += 1   # SIGSEGV
                return
            self.expand_downwards(vma, addr & ~((1 << PAGE_SHIFT) - 1))
        if not write:
            return
        if not vma.flags & VM_WRITE:
            self.counters.faults_not_writable += 1      # SIGSEGV
            return
        if vma.flags & VM_SHARED:
            return                                       # shmem/file page: no anon_vma
        vpn = addr >> PAGE_SHIFT
        page = mm.pages.get(vpn)
        index = vma.linear_page_index(addr)
        if page is None:
            # do_anonymous_page() / do_cow_fault(): "anon_vma_prepare(vma)" then a new page
            self.anon_vma_prepare(vma)
            self._new_page(mm, vpn, vma.anon_vma, index)
            self.counters.pages_new += 1
            return
        if page.mapcount > 1:
            # wp_page_copy(): COW a page still shared with another process
            self.anon_vma_prepare(vma)
            self.page_remove_rmap(page)
            self._new_page(mm, vpn, vma.anon_vma, index)
            self.counters.pages_cow += 1
            return
        if not page.exclusive:
            # wp_can_reuse_anon_folio(): the last mapping of a once-shared page is reused;
            # folio_move_anon_rmap() points it at this VMA's own anon_vma.
            if vma.anon_vma is None:
                self.violation("anon-page-without-anon_vma",
                               f"anon page at {addr:#x} in {vma!r} which has no anon_vma")
                return
            if page.mapping is not vma.anon_vma:
                page.mapping.pages -= 1
                page.mapping = vma.anon_vma
                vma.anon_vma.pages += 1
            page.exclusive = True
            self.counters.pages_reused += 1

    def _stack_below(self, mm: Mm, addr: int):
        i = self.vmas_from(mm, addr)
        if i < len(mm.vmas):
            vma = mm.vmas[i]
            if vma.flags & VM_GROWSDOWN and vma.start > addr >= vma.start - STACK_GUARD_GAP:
                prev = mm.vmas[i - 1] if i > 0 else None
                if prev is None or prev.end <= addr:
                    return vma
        return None

    def zap_range(self, mm: Mm, start: int, end: int) -> None:
        """zap_page_range / unmap_vmas: drop this mm's PTEs for [start, end)."""
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        pages = mm.pages
        if hi - lo < len(pages):
            doomed = [v for v in range(lo, hi) if v in pages]
        else:
            doomed = [v for v in pages if lo <= v < hi]
        for vpn in doomed:
            self.page_remove_rmap(pages.pop(vpn))
