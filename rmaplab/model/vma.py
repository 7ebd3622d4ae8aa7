"""mm/vma.c and mm/mmap.c: VMAs split, merge, and the syscalls that make them do so.

Mirrors 6.12's mm/vma.c (vma_merge_new_range, vma_merge_existing_range,
vma_expand, commit_merge, dup_anon_vma, __split_vma, vma_modify) with the merge
rule selectable: ``singular`` is 965f55dea0e3 ("mmap: avoid merging cloned VMAs",
v3.0 .. v6.15: list_is_singular() on the target), ``uncowed`` is 879bca0a2c4f
("mm/vma: fix incorrectly disallowed anonymous VMA merges", v6.16: the fork check is
made on the VMA whose anon_vma survives) with the two mremap fixes of Jan 2026 (v6.19,
6.18.8): 61f67c230a5e (a VMA that absorbs a moved faulted VMA takes its anon_vma) and
3b617fd3d317 (a moved VMA that was forked does not merge into an unfaulted one).
``uncowed-6.16`` is 879bca0a2c4f without them, as released in v6.16 .. 6.18.7.
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import trait

from rmaplab.model.base import KernelBase
from rmaplab.model.structs import (
    PAGE_SHIFT,
    PAGE_SIZE,
    STACK_GUARD_GAP,
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_GROWSDOWN,
    VM_NORESERVE,
    VM_READ,
    VM_SHARED,
    VM_SPECIAL,
    VM_WIPEONFORK,
    VM_WRITE,
    Mm,
    Vma,
)

MERGE_RULES: Final = ("uncowed", "singular", "uncowed-6.16")


class Vmg:
    """struct vma_merge_struct: the proposed range and its neighbours."""

    __slots__ = ("mm", "prev", "middle", "next", "vma", "start", "end", "pgoff", "flags",
                 "file", "anon_vma", "copied_from")

    def __init__(self, mm: Mm, prev: Vma | None, middle: Vma | None, start: int, end: int,
                 pgoff: int, flags: int, file: str | None, anon_vma) -> None:
        self.mm = mm
        self.prev = prev
        self.middle = middle
        self.next: Vma | None = None
        self.vma: Vma | None = middle
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.flags = flags
        self.file = file
        self.anon_vma = anon_vma
        self.copied_from: Vma | None = None


def _vm_start_gap(vma: Vma) -> int:
    """vm_start_gap() (include/linux/mm.h): a VM_GROWSDOWN stack keeps stack_guard_gap
    free below it (VM_SHADOW_STACK's page is not modelled)."""
    if not vma.flags & VM_GROWSDOWN:
        return vma.start
    return max(vma.start - STACK_GUARD_GAP, 0)


def vma_is_fork_child(vma: Vma | None) -> bool:
    """vma_had_uncowed_parents() / vma_is_fork_child(): more than one AVC means forked."""
    return vma is not None and vma.anon_vma is not None and len(vma.chain) != 1


@trait
class VmaMixin(KernelBase):
    # ------------------------------------------------------------ the VMA list of an mm
    @staticmethod
    def _index(mm: Mm, vma: Vma) -> int:
        """Index of the first VMA starting at or after vma.start (vma's own, if linked)."""
        vmas, start = mm.vmas, vma.start
        lo, hi = 0, len(vmas)
        while lo < hi:
            mid = (lo + hi) // 2
            if vmas[mid].start < start:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def neighbours(self, vma: Vma) -> tuple[Vma | None, Vma | None]:
        mm = vma.mm
        i = self._index(mm, vma)
        prev = mm.vmas[i - 1] if i > 0 else None
        nxt = mm.vmas[i + 1] if i + 1 < len(mm.vmas) else None
        return prev, nxt

    def find_vma(self, mm: Mm, addr: int) -> Vma | None:
        """The VMA containing addr, or None."""
        i = self.vmas_from(mm, addr)
        if i < len(mm.vmas) and mm.vmas[i].start <= addr:
            return mm.vmas[i]
        return None

    @staticmethod
    def vmas_from(mm: Mm, addr: int) -> int:
        """Index of the first VMA ending after addr."""
        vmas = mm.vmas
        lo, hi = 0, len(vmas)
        while lo < hi:
            mid = (lo + hi) // 2
            if vmas[mid].end <= addr:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def prev_of_range(self, mm: Mm, start: int) -> tuple[Vma | None, Vma | None]:
        """(last VMA ending at or before start, first VMA starting at or after start)."""
        i = self.vmas_from(mm, start)
        prev = mm.vmas[i - 1] if i > 0 else None
        nxt = mm.vmas[i] if i < len(mm.vmas) else None
        return prev, nxt

    def vma_link(self, mm: Mm, vma: Vma) -> None:
        mm.vmas.insert(self._index(mm, vma), vma)

    def vma_unlink(self, mm: Mm, vma: Vma) -> None:
        i = self._index(mm, vma)
        assert mm.vmas[i] is vma, "VMA list out of order"
        del mm.vmas[i]

    # ------------------------------------------------------------ allocation
    def vm_area_alloc(self, mm: Mm, start: int, end: int, pgoff: int, flags: int,
                      file: str | None) -> Vma:
        self.next_id += 1
        self.counters.vma_alloc += 1
        self.counters.alloc_vma()
        return Vma(self.next_id, mm, start, end, pgoff, flags, file)

    def vm_area_dup(self, orig: Vma, mm: Mm | None = None) -> Vma:
        """vm_area_dup(): a copy with an empty anon_vma_chain (anon_vma pointer copied)."""
        new = self.vm_area_alloc(mm or orig.mm, orig.start, orig.end, orig.pgoff, orig.flags,
                                 orig.file)
        new.anon_vma = orig.anon_vma
        return new

    def vm_area_free(self, vma: Vma) -> None:
        self.counters.free_vma()

    # ------------------------------------------------------------ merge rules
    def is_mergeable_vma(self, vmg: Vmg, merge_next: bool) -> bool:
        vma = vmg.next if merge_next else vmg.prev
        return vma.flags == vmg.flags and vma.file == vmg.file

    def is_mergeable_anon_vma(self, vmg: Vmg, merge_next: bool) -> bool:
        """The era's rule decides; both are evaluated so a replay counts where they differ."""
        tgt = vmg.next if merge_next else vmg.prev
        singular = self.mergeable_anon_vma_singular(vmg, tgt)
        # Under "singular" the other rule counted is 879bca0a2c4f with the 6.18.8 fixes.
        uncowed = self.mergeable_anon_vma_uncowed(vmg, tgt, self.merge_rule != "uncowed-6.16")
        c = self.counters
        c.merge_anon_vma_checks += 1
        if singular != uncowed:
            c.merge_rules_disagree += 1
        return singular if self.merge_rule == "singular" else uncowed

    @staticmethod
    def mergeable_anon_vma_singular(vmg: Vmg, tgt: Vma) -> bool:
        """965f55dea0e3: is_mergeable_anon_vma(anon_vma1, anon_vma2, vma=tgt) (v3.0 .. v6.15)."""
        src_anon, tgt_anon = vmg.anon_vma, tgt.anon_vma
        if (src_anon is None or tgt_anon is None) and len(tgt.chain) == 1:
            return True
        return src_anon is tgt_anon

    @staticmethod
    def mergeable_anon_vma_uncowed(vmg: Vmg, tgt: Vma, mremap_fixed: bool = True) -> bool:
        """879bca0a2c4f; ``mremap_fixed``: with 3b617fd3d317 (6.18.8), else as in 6.16."""
        src_anon, tgt_anon = vmg.anon_vma, tgt.anon_vma
        if tgt_anon is None and src_anon is not None:     # we will dup_anon_vma() from src
            if vma_is_fork_child(vmg.middle):
                return False
            # 3b617fd3d317 "mm/vma: enforce VMA fork limit on unfaulted,faulted mremap merge
            # too" (6.18.8: e96ecd36c329): vmg->middle is NULL for mremap's copy.
            return not mremap_fixed or not vma_is_fork_child(vmg.copied_from)
        if tgt_anon is not None and src_anon is None:     # we will simply use tgt's
            return not vma_is_fork_child(tgt)
        return src_anon is tgt_anon

    def can_vma_merge_before(self, vmg: Vmg) -> bool:
        pglen = (vmg.end - vmg.start) >> PAGE_SHIFT
        return (self.is_mergeable_vma(vmg, True) and self.is_mergeable_anon_vma(vmg, True)
                and vmg.next.pgoff == vmg.pgoff + pglen)

    def can_vma_merge_after(self, vmg: Vmg) -> bool:
        return (self.is_mergeable_vma(vmg, False) and self.is_mergeable_anon_vma(vmg, False)
                and vmg.prev.pgoff + vmg.prev.pages == vmg.pgoff)

    def can_vma_merge_left(self, vmg: Vmg) -> bool:
        return vmg.prev is not None and vmg.prev.end == vmg.start and self.can_vma_merge_after(vmg)

    def can_vma_merge_right(self, vmg: Vmg, can_merge_left: bool) -> bool:
        nxt = vmg.next
        if nxt is None or vmg.end != nxt.start or not self.can_vma_merge_before(vmg):
            return False
        if not can_merge_left:
            return True
        # Mergeable with each side does not make prev and next compatible with each other.
        prev = vmg.prev
        return prev.anon_vma is None or nxt.anon_vma is None or prev.anon_vma is nxt.anon_vma

    # ------------------------------------------------------------ merging
    def dup_anon_vma(self, dst: Vma, src: Vma) -> None:
        """dup_anon_vma(): the expanding VMA inherits the shrinking one's anon_vma and chain.

        "Easily overlooked: when mprotect shifts the boundary, make sure the expanding
        vma has anon_vma set if the shrinking vma had, to cover any anon pages imported."
        """
        if src.anon_vma is not None and dst.anon_vma is None:
            dst.anon_vma = src.anon_vma
            self.anon_vma_clone(dst, src, "merge")

    def commit_merge(self, vmg: Vmg, adjust: Vma | None, remove: Vma | None,
                     remove2: Vma | None, adj_start: int) -> None:
        """commit_merge() + vma_complete(): set ranges, then anon_vma_merge the removed VMAs.

        Removed VMAs leave the list before ranges change, so the list stays sorted.
        """
        removed = [r for r in (remove, remove2) if r is not None]
        for r in removed:
            self.vma_unlink(vmg.mm, r)
        vma = vmg.vma
        vma.start, vma.end, vma.pgoff = vmg.start, vmg.end, vmg.pgoff
        if adj_start:
            adjust.start += adj_start
            adjust.pgoff += adj_start >> PAGE_SHIFT
        for r in removed:
            if r.anon_vma is not None:
                self.anon_vma_merge(vma, r)
            self.vm_area_free(r)

    def vma_merge_existing_range(self, vmg: Vmg) -> Vma | None:
        """vma_merge_existing_range(): a range of vmg.middle changes flags; merge neighbours."""
        middle, prev = vmg.middle, vmg.prev
        assert middle is not None, "vma_merge_existing_range() needs vmg.middle"
        start, end = vmg.start, vmg.end
        left_side = start == middle.start
        right_side = end == middle.end
        if vmg.flags & VM_SPECIAL or (not left_side and not right_side):
            return None
        merge_left = self.can_vma_merge_left(vmg) if left_side else False
        if right_side:
            _, vmg.next = self.neighbours(middle)
            merge_right = self.can_vma_merge_right(vmg, merge_left)
        else:
            vmg.next = None
            merge_right = False
        if not merge_left and not merge_right:
            return None
        nxt = vmg.next
        merge_both = merge_left and merge_right
        merge_will_delete_vma = left_side and right_side
        merge_will_delete_next = merge_both
        adjust, adj_start = None, 0
        if merge_both:
            #         |<----->|
            # |-------*********-------|   prev extends, middle and next are deleted
            vmg.vma, vmg.start, vmg.end, vmg.pgoff = prev, prev.start, nxt.end, prev.pgoff
            self.dup_anon_vma(prev, nxt if nxt.anon_vma is not None else middle)
        elif merge_left:
            # prev extends; middle shrinks or is deleted
            vmg.vma, vmg.start, vmg.pgoff = prev, prev.start, prev.pgoff
            if not merge_will_delete_vma:
                adjust, adj_start = middle, vmg.end - middle.start
            self.dup_anon_vma(prev, middle)
        else:
            # next extends; middle shrinks or is deleted
            pglen = (vmg.end - vmg.start) >> PAGE_SHIFT
            if merge_will_delete_vma:
                vmg.vma, vmg.end, vmg.pgoff = nxt, nxt.end, nxt.pgoff - pglen
            else:
                # The only case where the merged VMA is not vmg.vma: middle shrinks to
                # [middle.start, start) and next grows down to start.
                vmg.vma = middle
                vmg.start, vmg.end, vmg.pgoff = middle.start, start, middle.pgoff
                adjust, adj_start = nxt, -(middle.end - start)
            self.dup_anon_vma(nxt, middle)
        self.commit_merge(vmg, adjust, middle if merge_will_delete_vma else None,
                          nxt if merge_will_delete_next else None, adj_start)
        return prev if merge_left else nxt

    def vma_merge_new_range(self, vmg: Vmg, just_expand: bool = False) -> Vma | None:
        """vma_merge_new_range(): a new range [start, end) next to prev/next; expand one."""
        prev, nxt = vmg.prev, vmg.next
        if vmg.flags & VM_SPECIAL or (prev is None and nxt is None):
            return None
        can_merge_left = self.can_vma_merge_left(vmg)
        can_merge_right = (not just_expand) and self.can_vma_merge_right(vmg, can_merge_left)
        pglen = (vmg.end - vmg.start) >> PAGE_SHIFT
        if can_merge_right:
            vmg.end, vmg.vma, vmg.pgoff = nxt.end, nxt, nxt.pgoff - pglen
        if can_merge_left:
            vmg.start, vmg.vma, vmg.pgoff = prev.start, prev, prev.pgoff
        if vmg.vma is None:
            return None
        self.vma_expand(vmg)
        return vmg.vma

    def vma_expand(self, vmg: Vmg) -> None:
        """vma_expand(): grow vmg.vma over [start, end), absorbing next when it ends there.

        "If we are removing the next VMA or copying from a VMA (e.g. mremap()'ing), we
        must propagate anon_vma state": the copied-from half is 61f67c230a5e ("mm/vma:
        fix anon_vma UAF on mremap() faulted, unfaulted merge", v6.19, 6.18.8 as
        33465280669d; not under the ``uncowed-6.16`` rule).  Without it an unfaulted neighbour that absorbs a moved faulted
        VMA keeps no anon_vma while the moved pages point at the source's, which is freed
        when the source is unmapped.  Under the singular rule (965f55dea0e3) such a merge
        is refused earlier, so the copied-from step never finds work there.
        """
        vma, nxt = vmg.vma, vmg.next
        remove_next = nxt is not None and vma is not nxt and vmg.end == nxt.end
        if remove_next:
            self.dup_anon_vma(vma, nxt)
        if vmg.copied_from is not None and self.merge_rule != "uncowed-6.16":
            self.dup_anon_vma(vma, vmg.copied_from)
        self.commit_merge(vmg, None, nxt if remove_next else None, None, 0)

    # ------------------------------------------------------------ splitting
    def split_vma(self, vma: Vma, addr: int, new_below: bool) -> Vma:
        """__split_vma(): a copy takes [start, addr) (new_below) or [addr, end)."""
        new = self.vm_area_dup(vma)
        if new_below:
            new.end = addr
        else:
            new.start = addr
            new.pgoff += (addr - vma.start) >> PAGE_SHIFT
        self.anon_vma_clone(new, vma, "split")
        if new_below:
            vma.pgoff += (addr - new.start) >> PAGE_SHIFT
            vma.start = addr
        else:
            vma.end = addr
        self.vma_link(vma.mm, new)
        return new

    def vma_modify(self, vmg: Vmg) -> Vma:
        """vma_modify(): merge if possible, else split off the parts outside [start, end)."""
        merged = self.vma_merge_existing_range(vmg)
        if merged is not None:
            return merged
        vma = vmg.middle
        if vma.start < vmg.start:
            self.split_vma(vma, vmg.start, True)
        if vma.end > vmg.end:
            self.split_vma(vma, vmg.end, False)
        return vma

    def vma_modify_flags(self, prev: Vma | None, vma: Vma, start: int, end: int,
                         new_flags: int) -> Vma:
        vmg = Vmg(vma.mm, prev, vma, start, end,
                  vma.pgoff + ((start - vma.start) >> PAGE_SHIFT), new_flags, vma.file,
                  vma.anon_vma)
        result = self.vma_modify(vmg)
        result.flags = new_flags
        return result

    # ------------------------------------------------------------ syscalls
    def do_mmap(self, mm: Mm, start: int, end: int, prot: int, file: str | None, pgoff: int,
                shared: bool, extra_flags: int = 0) -> Vma:
        """mmap_region(): unmap what is there, try to expand a neighbour, else a new VMA."""
        flags = prot | (VM_SHARED if shared else 0) | extra_flags
        if file is None and not shared:
            pgoff = start >> PAGE_SHIFT            # anonymous private: pgoff = addr >> PAGE_SHIFT
        if (flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE:
            flags |= VM_ACCOUNT                    # accountable_mapping()
        self.do_munmap(mm, start, end)
        prev, nxt = self.prev_of_range(mm, start)
        vmg = Vmg(mm, prev, None, start, end, pgoff, flags, file, None)
        vmg.next = nxt
        merged = self.vma_merge_new_range(vmg)
        if merged is not None:
            return merged
        vma = self.vm_area_alloc(mm, start, end, pgoff, flags, file)
        self.vma_link(mm, vma)
        return vma

    def do_munmap(self, mm: Mm, start: int, end: int) -> None:
        """do_vmi_munmap(): split at the edges, zap pages, unlink anon_vmas, free the VMAs."""
        i = self.vmas_from(mm, start)
        if i == len(mm.vmas) or mm.vmas[i].start >= end:
            return
        vma = mm.vmas[i]
        if vma.start < start:
            self.split_vma(vma, start, True)       # vms_gather_munmap_vmas
        i = self.vmas_from(mm, start)
        doomed = []
        while i < len(mm.vmas) and mm.vmas[i].start < end:
            v = mm.vmas[i]
            if v.end > end:
                self.split_vma(v, end, False)
            doomed.append(v)
            i += 1
        self.zap_range(mm, start, end)
        for v in doomed:
            self.vma_unlink(mm, v)
            self.unlink_anon_vmas(v)               # free_pgtables()
            self.vm_area_free(v)                   # remove_vma()

    def do_mprotect(self, mm: Mm, start: int, end: int, prot: int) -> None:
        """do_mprotect_pkey(): mprotect_fixup() on each VMA of [start, end), stop at a hole."""
        vma = self.find_vma(mm, start)
        if vma is None:
            self.counters.syscall_errors += 1
            return
        prev, _ = self.neighbours(vma)
        if start > vma.start:
            prev = vma
        tmp = vma.start
        nstart = start
        while vma is not None and vma.start < end:
            if vma.start != tmp:
                self.counters.syscall_errors += 1  # -ENOMEM: a hole in the range
                return
            newflags = prot | (vma.flags & ~VM_ACCESS_FLAGS)
            tmp = min(vma.end, end)
            prev = self.mprotect_fixup(vma, prev, nstart, tmp, newflags)
            tmp = prev.end
            nstart = tmp
            i = self.vmas_from(mm, tmp)
            vma = mm.vmas[i] if i < len(mm.vmas) else None
        if tmp < end:
            self.counters.syscall_errors += 1

    def mprotect_fixup(self, vma: Vma, prev: Vma | None, start: int, end: int,
                       newflags: int) -> Vma:
        oldflags = vma.flags
        if newflags == oldflags:
            return vma
        # "If we make a private mapping writable we increase our commit; but ... cannot
        # reduce our commit if we make it unwritable again except in the anonymous case
        # where no anon_vma has yet to be assigned."
        if newflags & VM_WRITE:
            if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE):
                newflags |= VM_ACCOUNT
        elif oldflags & VM_ACCOUNT and vma.file is None and vma.anon_vma is None:
            newflags &= ~VM_ACCOUNT
        return self.vma_modify_flags(prev, vma, start, end, newflags)

    def do_madvise_flags(self, mm: Mm, start: int, end: int, set_bits: int, clear_bits: int
                         ) -> None:
        """madvise_walk_vmas() + madvise_update_vma() for DONTFORK/DOFORK/WIPEONFORK/KEEPONFORK
        and (THP kernels) HUGEPAGE/NOHUGEPAGE: a VMA whose flags change is split or merged
        (vma_modify_flags)."""
        vma = self.find_vma(mm, start)
        if vma is None:
            i = self.vmas_from(mm, start)
            vma = mm.vmas[i] if i < len(mm.vmas) else None
        if vma is None or vma.start >= end:
            self.counters.syscall_errors += 1      # -ENOMEM: nothing mapped
            return
        prev, _ = self.neighbours(vma)
        if start > vma.start:
            prev = vma
        while vma is not None and vma.start < end:
            if start < vma.start:
                self.counters.syscall_errors += 1  # -ENOMEM for the hole; the walk goes on
                start = vma.start
            if set_bits & VM_WIPEONFORK and (vma.file is not None or vma.flags & VM_SHARED):
                self.counters.syscall_errors += 1  # -EINVAL: WIPEONFORK is private-anonymous only
                return
            tmp = min(vma.end, end)
            new_flags = (vma.flags | set_bits) & ~clear_bits
            if new_flags != vma.flags:
                vma = self.vma_modify_flags(prev, vma, start, tmp, new_flags)
            prev = vma
            start = max(tmp, prev.end)
            if start >= end:
                break
            i = self.vmas_from(mm, start)
            vma = mm.vmas[i] if i < len(mm.vmas) else None

    def do_brk(self, mm: Mm, new_brk: int, start_brk: int | None = None) -> None:
        """brk(): the first call sets the heap base; then grow with do_brk_flags or shrink."""
        if mm.start_brk is None:
            base = start_brk if start_brk is not None else new_brk
            mm.start_brk = mm.brk = base
            if new_brk == base:
                return
        if new_brk < mm.start_brk:
            self.counters.syscall_errors += 1
            return
        newbrk = _page_align(new_brk)
        oldbrk = _page_align(mm.brk)
        if newbrk == oldbrk:
            mm.brk = new_brk
            return
        vmas = mm.vmas
        if new_brk <= mm.brk:
            # "Always allow shrinking brk" -- unless no mapping reaches into [newbrk,
            # oldbrk): "mapping intersects with an existing non-brk vma" (brk(), v6.1+).
            i = self.vmas_from(mm, newbrk)
            if i == len(vmas) or vmas[i].start >= oldbrk:
                self.counters.syscall_errors += 1
                return
            mm.brk = new_brk
            self.do_munmap(mm, newbrk, oldbrk)
            return
        # brk(): "Only check if the next VMA is within the stack_guard_gap of the
        # expansion area": the heap never grows into (or up to a page below) a mapping.
        i = self.vmas_from(mm, oldbrk)
        if i < len(vmas) and newbrk + PAGE_SIZE > _vm_start_gap(vmas[i]):
            self.counters.syscall_errors += 1
            return
        self.do_brk_flags(mm, oldbrk, newbrk - oldbrk)
        mm.brk = new_brk

    def do_brk_flags(self, mm: Mm, addr: int, length: int) -> None:
        """do_brk_flags(): expand the brk VMA if it ends at addr (VMG_FLAG_JUST_EXPAND).

        The brk VMA is what brk() finds with vma_prev_limit(&vmi, mm->start_brk): only a
        VMA reaching start_brk or beyond.  A VMA that merely ends at start_brk -- the ELF
        loader's bss when brk is not randomised (ADDR_NO_RANDOMIZE, or any User-Mode Linux
        guest) -- is not expanded: the heap becomes a VMA of its own, and its first write
        fault then gives it the bss's anon_vma (find_mergeable_anon_vma).  Since the maple
        tree rework of brk in v6.1 ("mm/mmap: change do_brk_flags() to expand existing VMA
        and add do_brk_munmap()"); 2019's do_brk_flags() called vma_merge() on any prev.
        """
        flags = VM_READ | VM_WRITE | VM_ACCOUNT    # VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT
        prev, nxt = self.prev_of_range(mm, addr)
        if prev is not None and prev.end == addr and prev.end > mm.start_brk:
            vmg = Vmg(mm, prev, None, addr, addr + length, addr >> PAGE_SHIFT, flags, None, None)
            vmg.next = nxt
            if self.vma_merge_new_range(vmg, just_expand=True) is not None:
                return
        vma = self.vm_area_alloc(mm, addr, addr + length, addr >> PAGE_SHIFT, flags, None)
        self.vma_link(mm, vma)

    def vma_merge_extend(self, vma: Vma, delta: int) -> Vma | None:
        """vma_merge_extend(): grow vma by delta bytes, merging the next VMA if it now abuts.

        mremap()'s in-place growth (expand_vma_in_place): a new range [vm_end, vm_end +
        delta) with vma as prev, so vma_merge_new_range() expands vma and, when the next
        VMA starts exactly at the new end and is compatible, absorbs it too.
        """
        _, nxt = self.neighbours(vma)
        vmg = Vmg(vma.mm, vma, None, vma.end, vma.end + delta, vma.pgoff + vma.pages,
                  vma.flags, vma.file, vma.anon_vma)
        vmg.next = nxt
        return self.vma_merge_new_range(vmg)

    def copy_vma(self, vma: Vma, start: int, end: int, pgoff: int) -> Vma:
        """copy_vma() (mremap move): merge into a neighbour at the destination, else a copy.

        An unfaulted anonymous VMA takes the destination's pgoff "to increase its chance of
        merging"; a faulted one keeps its pgoff and its anon_vmas (anon_vma_clone).  The
        merge is vma_merge_copied_range() (61f67c230a5e): a new-range merge that knows the
        VMA it copies from, for the fork check (3b617fd3d317) and for dup_anon_vma().
        """
        mm = vma.mm
        if vma.file is None and not vma.flags & VM_SHARED and vma.anon_vma is None:
            pgoff = start >> PAGE_SHIFT
        prev, nxt = self.prev_of_range(mm, start)
        vmg = Vmg(mm, prev, None, start, end, pgoff, vma.flags, vma.file, vma.anon_vma)
        vmg.next = nxt
        vmg.copied_from = vma
        merged = self.vma_merge_new_range(vmg)
        if merged is not None:
            return merged
        new = self.vm_area_dup(vma)
        new.start, new.end, new.pgoff = start, end, pgoff
        self.anon_vma_clone(new, vma, "copy_vma")
        self.vma_link(mm, new)
        return new

    def do_mremap(self, mm: Mm, old_start: int, old_end: int, new_start: int, new_end: int,
                  dontunmap: bool = False) -> None:
        """mremap() (mm/mremap.c, 6.18): shrink or grow in place, or move.

        A range at the same address is resized in place: a shrink unmaps the tail, a
        growth is expand_vma_in_place() (vma_merge_extend).  Any other target is a move
        with MREMAP_MAYMOVE | MREMAP_FIXED (plus MREMAP_DONTUNMAP if asked): the target is
        unmapped, a shrinking move drops the tail first, then move_vma(); a move that
        keeps the size may span several VMAs (remap_move()).  Errors are counted, not
        raised, as the kernel returns them to the caller.
        """
        old_len, new_len = old_end - old_start, new_end - new_start
        in_place = new_start == old_start and not dontunmap
        if not in_place and ((old_end > new_start and new_end > old_start)   # vrm_overlaps()
                             or dontunmap and old_len != new_len):
            self.counters.syscall_errors += 1          # -EINVAL (check_mremap_params)
            return
        if not in_place and old_len == new_len:        # vrm_move_only(): may span VMAs
            self.remap_move(mm, old_start, old_end, new_start, dontunmap)
            return
        vma = self.find_vma(mm, old_start)             # vma_lookup()
        # check_prep_vma(): a move or a growth must start inside one VMA and, up to
        # min(old_len, new_len), stay in it; an in-place shrink is not checked ("We permit
        # crossing of boundaries for the range being unmapped due to a shrink").
        if vma is None or (not in_place or new_len > old_len) and (
                min(old_len, new_len) > vma.end - old_start):
            self.counters.syscall_errors += 1          # -EFAULT
            return
        if dontunmap and vma.flags & VM_SPECIAL:
            self.counters.syscall_errors += 1          # -EINVAL
            return
        if not in_place:
            self.do_munmap(mm, new_start, new_end)     # mremap_to(): MREMAP_FIXED
        if new_len < old_len:
            self.do_munmap(mm, old_start + new_len, old_end)   # shrink_vma()
            if in_place:
                return
            old_end = old_start + new_len
        if in_place:
            if new_len > old_len:
                # vrm_can_expand_in_place(): the range ends at vm_end and nothing is mapped
                # in [vm_end, vm_end + delta); the trace asks for this address: no move.
                delta = new_len - old_len
                i = self.vmas_from(mm, vma.end)
                blocked = i < len(mm.vmas) and mm.vmas[i].start < vma.end + delta
                if old_end != vma.end or blocked or self.vma_merge_extend(vma, delta) is None:
                    self.counters.syscall_errors += 1
            return
        vma = self.find_vma(mm, old_start)             # the unmaps may have split it
        assert vma is not None, "find_vma: no VMA at or above old_start"
        self.move_vma(vma, old_start, old_end, new_start, new_end, dontunmap)

    def remap_move(self, mm: Mm, start: int, end: int, new_start: int, dontunmap: bool
                   ) -> None:
        """remap_move() (6.17, "mm/mremap: permit mremap() move of multiple VMAs"): each
        VMA in [start, end) is moved in turn (split as needed), the gaps between them kept
        at the destination; a gap at the start is -EFAULT.  (vma_multi_allowed() refuses
        only uffd-armed VMAs and files with their own get_unmapped_area: not modelled.)"""
        target, last_end, seen = new_start, 0, False
        while start < end:
            i = self.vmas_from(mm, start)              # for_each_vma_range()
            if i == len(mm.vmas) or mm.vmas[i].start >= end:
                return
            vma = mm.vmas[i]
            if not seen and start < vma.start:
                self.counters.syscall_errors += 1      # -EFAULT
                return
            addr, piece_end = max(vma.start, start), min(end, vma.end)
            offset = vma.start - last_end if seen else 0
            last_end = vma.end
            if dontunmap and vma.flags & VM_SPECIAL:
                self.counters.syscall_errors += 1      # check_prep_vma(): -EINVAL
                return
            dest = target + offset
            self.do_munmap(mm, dest, dest + piece_end - addr)  # mremap_to(): MREMAP_FIXED
            piece = self.find_vma(mm, addr)            # the unmap may have split vma
            assert piece is not None, "find_vma: no VMA at or above addr"
            self.move_vma(piece, addr, piece_end, dest, dest + piece_end - addr, dontunmap)
            seen = True
            target = dest + piece_end - addr
            start = piece_end

    def move_vma(self, vma: Vma, old_start: int, old_end: int, new_start: int, new_end: int,
                 dontunmap: bool) -> None:
        """move_vma(): copy_vma_and_data(), then unmap_source_vma() or dontunmap_complete().

        copy_vma() is given the whole source VMA (the unmap of the old range splits it
        afterwards); if the source itself was merged into the copy (only possible while
        unfaulted), the merged VMA is the source from then on.
        """
        mm = vma.mm
        pgoff = vma.pgoff + ((old_start - vma.start) >> PAGE_SHIFT)
        new = self.copy_vma(vma, new_start, new_end, pgoff)
        if new.start <= old_start < new.end:
            vma = new                                   # "Source vma may have been merged"
        shift = (new_start - old_start) >> PAGE_SHIFT
        lo, hi = old_start >> PAGE_SHIFT, old_end >> PAGE_SHIFT
        moved = [(v, p) for v, p in mm.pages.items() if lo <= v < hi]
        for v, _ in moved:
            del mm.pages[v]
        for v, p in moved:
            mm.pages[v + shift] = p                     # move_page_tables()
        if not dontunmap:
            self.do_munmap(mm, old_start, old_end)      # unmap_source_vma()
        elif new is not vma and vma.start == old_start and vma.end == old_end:
            # dontunmap_complete(): "anon_vma links of the old vma is no longer needed
            # after its page table has been moved"; a partly moved VMA keeps them.
            self.unlink_anon_vmas(vma)

    def expand_downwards(self, vma: Vma, addr: int) -> None:
        """expand_downwards(): a fault below a VM_GROWSDOWN stack extends it (anon_vma first)."""
        self.anon_vma_prepare(vma)
        grow = (vma.start - addr) >> PAGE_SHIFT
        vma.start -= grow << PAGE_SHIFT
        vma.pgoff -= grow


def _page_align(addr: int) -> int:
    return (addr + 4095) & ~4095


__all__ = ["MERGE_RULES", "VmaMixin", "Vmg"]
