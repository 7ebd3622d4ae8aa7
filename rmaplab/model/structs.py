"""The objects of the anonymous reverse map (include/linux/rmap.h, include/linux/mm_types.h).

Only what the rmap bookkeeping reads or writes is modelled.  Plain ``__slots__``
classes and ints: a replay allocates exactly the objects the kernel would.

``struct anon_vma`` (rmap.h): ``root`` holds the lock for the whole fork family;
``parent`` is the anon_vma it was forked from; ``num_children`` counts anon_vmas
whose parent is this one, counting the root's self-parent link;
``num_active_vmas`` counts VMAs whose ``vma->anon_vma`` is this one.  Those two
replaced the mixed ``degree`` counter in 2555283eb40d (CVE-2022-42703); since both
are updated at exactly the places ``degree`` was, ``degree`` equals their sum and
is derived here for the policies that used it.  ``avcs`` is ``rb_root``: the
interval tree of anon_vma_chains, here a set (the model does not need its order).

``struct anon_vma_chain``: links one VMA to one anon_vma.  A VMA's ``chain`` is
its ``anon_vma_chain`` list; the kernel adds at the head (``list_add``) so the
root ends up last.  Here ``chain`` is kept oldest first, i.e. ``chain[0]`` is the
root's AVC and ``reversed(chain)`` is the kernel's list order.
"""

from __future__ import annotations

from typing import Final

# Final: the compiled model (mypyc) inlines these instead of looking them up per use.
PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
# stack_guard_gap (mm/mmap.c, 256 pages): a fault this far below a VM_GROWSDOWN stack
# still grows it, and brk() and mmap keep this much free below one (vm_start_gap()).
STACK_GUARD_GAP: Final = 256 << PAGE_SHIFT

# vm_flags bits that the merge and reuse rules compare (include/linux/mm.h values).
VM_READ: Final = 0x00000001
VM_WRITE: Final = 0x00000002
VM_EXEC: Final = 0x00000004
VM_SHARED: Final = 0x00000008
VM_GROWSDOWN: Final = 0x00000100
VM_PFNMAP: Final = 0x00000400
VM_DONTCOPY: Final = 0x00020000
VM_DONTEXPAND: Final = 0x00040000
VM_ACCOUNT: Final = 0x00100000
VM_NORESERVE: Final = 0x00200000
VM_WIPEONFORK: Final = 0x02000000
# Set only on kernels with CONFIG_TRANSPARENT_HUGEPAGE: by madvise(MADV_HUGEPAGE /
# MADV_NOHUGEPAGE) (hugepage_madvise()) and, since c4608d1bf7c6 (v6.8 and 6.7.y), by mmap(MAP_STACK).
VM_HUGEPAGE: Final = 0x20000000
VM_NOHUGEPAGE: Final = 0x40000000
VM_ACCESS_FLAGS: Final = VM_READ | VM_WRITE | VM_EXEC
# VM_SPECIAL mappings (vdso, vvar, device memory) are never merged.
VM_SPECIAL: Final = VM_PFNMAP | VM_DONTEXPAND

PROT: Final = {"": 0, "r": VM_READ, "rw": VM_READ | VM_WRITE, "rx": VM_READ | VM_EXEC,
        "rwx": VM_READ | VM_WRITE | VM_EXEC, "w": VM_WRITE, "wx": VM_WRITE | VM_EXEC,
        "x": VM_EXEC}


class AnonVma:
    __slots__ = ("id", "root", "parent", "refcount", "num_children", "num_active_vmas",
                 "avcs", "freed", "pages", "depth", "deferred", "mark", "users", "kids")

    def __init__(self, ident: int) -> None:
        self.id = ident
        self.root: AnonVma = self
        self.parent: AnonVma = self
        self.refcount = 1
        self.num_children = 0
        self.num_active_vmas = 0
        self.avcs: set[AnonVmaChain] = set()
        self.freed = False
        # Model bookkeeping, not kernel fields: mapped pages whose page->mapping is this
        # anon_vma (so freeing it while pages still point at it is caught at once), and
        # the distance to the root.
        self.pages = 0
        self.depth = 0
        # True while a policy has deferred the allocation (Policy.defer_anon_vma): the
        # object stands for the rmap such a kernel keeps without an anon_vma, and neither
        # it nor the AVCs that link to it are counted until it is materialised.
        self.deferred = False
        # Scratch space of the invariant checks (rmaplab.model.invariants._family_sound):
        # counts per member of the family being checked, valid while ``mark`` is that
        # check's token -- counting on the objects themselves needs no dict per check.
        self.mark: object | None = None
        self.users = 0
        self.kids = 0

    @property
    def degree(self) -> int:
        """v3.19..v5.19 ``degree``: child anon_vmas plus VMAs (7a3ef208e662)."""
        return self.num_children + self.num_active_vmas

    def __repr__(self) -> str:
        return f"AV{self.id}"


# ``vma->anon_vma = NULL`` where a call that follows may set it again (anon_vma_fork):
# typed as the field, so that a type checker -- and the compiler, which trusts it -- does
# not take the field for None after that call.
NULL_ANON_VMA: AnonVma | None = None


class AnonVmaChain:
    __slots__ = ("vma", "anon_vma")

    def __init__(self, vma: Vma, anon_vma: AnonVma) -> None:
        self.vma = vma
        self.anon_vma = anon_vma


class Vma:
    __slots__ = ("id", "mm", "start", "end", "pgoff", "flags", "file", "anon_vma", "chain",
                 "vm_prev")

    def __init__(self, ident: int, mm: Mm, start: int, end: int, pgoff: int, flags: int,
                 file: str | None) -> None:
        self.id = ident
        self.mm = mm
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.flags = flags
        self.file = file
        self.anon_vma: AnonVma | None = None
        self.chain: list[AnonVmaChain] = []
        # Only meaningful during dup_mmap on kernels before v5.7, where vm_area_dup()
        # copied the parent's vm_prev into the child VMA (see rmaplab.model.fork).
        self.vm_prev: Vma | None = None

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    def linear_page_index(self, addr: int) -> int:
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def __repr__(self) -> str:
        return f"VMA{self.id}[{self.start:#x}-{self.end:#x} {self.anon_vma!r}]"


class Page:
    """An anonymous page (folio) with its rmap fields ``mapping`` and ``index``."""

    __slots__ = ("id", "mapping", "index", "mapcount", "exclusive")

    def __init__(self, ident: int, mapping: AnonVma, index: int) -> None:
        self.id = ident
        self.mapping = mapping
        self.index = index
        self.mapcount = 1
        # PageAnonExclusive: set for a page only this mm maps; fork clears it.
        self.exclusive = True


class Mm:
    """An mm_struct: the VMAs in address order, brk, and the anon pages its PTEs map."""

    __slots__ = ("pid", "vmas", "pages", "start_brk", "brk", "forked")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.vmas: list[Vma] = []
        self.pages: dict[int, Page] = {}   # virtual page number -> anon page mapped there
        self.start_brk: int | None = None
        self.brk: int | None = None
        self.forked = False                # made by dup_mmap (until the next exec)


class ForkLinks:
    """What dup_mmap knows about neighbours while anon_vma_fork(tmp, mpnt) runs
    (given to the policy hooks; rmaplab.model.policies exports it).

    ``dst_vm_prev``: the value of ``tmp->vm_prev`` at that moment: a stale copy of
    the parent's ``mpnt->vm_prev`` before v5.7 (vm_area_dup copied the struct), NULL
    from v5.7 ("mm: set vm_next and vm_prev to NULL in vm_area_dup()").
    ``src_vm_prev``: the parent's previous VMA.  ``child_prev``: the child's
    previous VMA, the last one dup_mmap linked.
    """

    __slots__ = ("dst_vm_prev", "src_vm_prev", "child_prev")

    def __init__(self, dst_vm_prev: Vma | None, src_vm_prev: Vma | None,
                 child_prev: Vma | None) -> None:
        self.dst_vm_prev = dst_vm_prev
        self.src_vm_prev = src_vm_prev
        self.child_prev = child_prev
