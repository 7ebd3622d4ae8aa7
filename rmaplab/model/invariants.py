"""The rules the anon rmap lives by, checked from scratch after every event.

* same-anon_vma-same-chain: VMAs of one mm that share an anon_vma have identical
  chains (d0e9fe1758f2; anon_vma_merge() drops one chain relying on it; 2555283eb40d
  fixed the reuse that broke it, CVE-2022-42703).
* page-unreachable: every mapped anon page's anon_vma is on its VMA's chain, so an
  rmap walk from the page finds the VMA.
* page-mapping-freed: no mapped page points to a freed anon_vma.
* counts: num_children / num_active_vmas equal their definitions recomputed from
  the chains; refcount = 1 + (live non-root members, for a root); root/parent links
  stay inside the family.
* links: every AVC is on its VMA's chain and in its anon_vma's tree, never on a
  freed anon_vma; vma->anon_vma is on vma's chain; the VMA list is sorted.

Reported where they happen (rmaplab.model.rmap): page-mapping-freed at anon_vma_free,
counts-on-free, anon_vma_merge-BUG, and unfaulted-with-chain (7.0's check_anon_vma_clone
warning, for policies with ``skip_unfaulted``).

``check_mm`` covers one address space, ``check_family`` one anon_vma tree (the
set reachable from its root); the machine calls them for what an event touched.
"""

from __future__ import annotations

from collections.abc import Callable

from rmaplab.model.structs import PAGE_SHIFT, AnonVma, Mm, Vma
from rmaplab.model.vma import VmaMixin

Report = Callable[[str, str], None]


def _on_chain(vma: Vma, anon_vma: AnonVma) -> bool:
    """anon_vma is on vma's anon_vma_chain (chains are short: one AVC per generation)."""
    for avc in vma.chain:
        if avc.anon_vma is anon_vma:
            return True
    return False


def _chain_set(vma: Vma) -> frozenset:
    return frozenset([avc.anon_vma for avc in vma.chain])


def _same_chain(a: Vma, b: Vma) -> bool:
    """a's and b's chains link the same anon_vmas.  VMAs split from one another have them
    in the same order: compared pairwise first, as sets only if that fails."""
    ca, cb = a.chain, b.chain
    if len(ca) == len(cb):
        for i in range(len(ca)):
            if ca[i].anon_vma is not cb[i].anon_vma:
                break
        else:
            return True
    return _chain_set(a) == _chain_set(b)


def check_mm(mm: Mm, report: Report) -> None:
    prev_end = -1
    # The first VMA seen using each anon_vma: every later one must have the same chain.
    first_user: dict[AnonVma, Vma] = {}
    for vma in mm.vmas:
        if vma.start < prev_end or vma.start >= vma.end:
            report("links", f"pid {mm.pid}: VMA list unsorted or overlapping at {vma!r}")
        prev_end = vma.end
        av = vma.anon_vma
        if av is None and not vma.chain:
            continue            # nothing chained, nothing to compare: most VMAs
        for avc in vma.chain:
            if avc.vma is not vma:
                report("links", f"pid {mm.pid}: AVC on {vma!r}'s chain points to {avc.vma!r}")
            if avc.anon_vma.freed:
                report("links",
                       f"pid {mm.pid}: {vma!r} is chained to freed {avc.anon_vma!r}")
            elif avc not in avc.anon_vma.avcs:
                report("links", f"pid {mm.pid}: {vma!r}'s AVC missing from {avc.anon_vma!r}'s tree")
        if av is None:
            report("links", f"pid {mm.pid}: {vma!r} has a chain but no anon_vma")
            continue
        if not _on_chain(vma, av):
            report("links", f"pid {mm.pid}: {vma!r}'s anon_vma {av!r} is not on its chain")
        other = first_user.get(av)
        if other is None:
            first_user[av] = vma
        elif not _same_chain(other, vma):
            report("same-anon_vma-same-chain",
                   f"pid {mm.pid}: VMAs sharing {av!r} have chains "
                   f"{_ids(_chain_set(other))} and {_ids(_chain_set(vma))} (at {vma!r})")
    if not mm.pages or _pages_reachable(mm):
        return
    # Something is wrong: walk the pages in address order to report each in turn.
    vmas = mm.vmas
    j = 0
    for vpn in sorted(mm.pages):
        page = mm.pages[vpn]
        addr = vpn << PAGE_SHIFT
        while j < len(vmas) and vmas[j].end <= addr:
            j += 1
        at = vmas[j] if j < len(vmas) and vmas[j].start <= addr else None
        if page.mapping.freed:
            report("page-mapping-freed",
                   f"pid {mm.pid}: page at {addr:#x} maps freed {page.mapping!r}")
            continue
        if at is None:
            report("page-unreachable", f"pid {mm.pid}: page at {addr:#x} is outside every VMA")
            continue
        if not _on_chain(at, page.mapping):
            report("page-unreachable",
                   f"pid {mm.pid}: page at {addr:#x} maps {page.mapping!r}, not on {at!r}'s "
                   f"chain {_ids(_chain_set(at))}: an rmap walk cannot find this mapping")


def _pages_reachable(mm: Mm) -> bool:
    """True if every mapped page's anon_vma is live and on the chain of the VMA that maps
    it: check_mm's page checks without reports, in the pages' own order (no sort: this
    runs after every event of a checked replay)."""
    vmas = mm.vmas
    n = len(vmas)
    for vpn, page in mm.pages.items():
        if page.mapping.freed:
            return False
        addr = vpn << PAGE_SHIFT
        lo = VmaMixin.vmas_from(mm, addr)   # the first VMA ending after addr
        if lo == n or vmas[lo].start > addr or not _on_chain(vmas[lo], page.mapping):
            return False
    return True


def by_id(anon_vma: AnonVma) -> int:
    """Sort key: an anon_vma's id (unique in a Kernel, in order of allocation)."""
    return anon_vma.id


def family(root: AnonVma) -> tuple[set[Vma], set[AnonVma]]:
    """(VMAs, anon_vmas) of root's tree: every family VMA is chained to the root."""
    vmas = {avc.vma for avc in root.avcs}
    members = {avc.anon_vma for vma in vmas for avc in vma.chain}
    return vmas, members


def check_family(root: AnonVma, report: Report) -> None:
    if root.freed:
        return
    if root.root is not root or root.parent is not root:
        report("counts", f"{root!r} is checked as a root but has root {root.root!r}, "
                         f"parent {root.parent!r}")
        return
    vmas, members = family(root)
    if not root.avcs:
        # An emptied root lives on only while descendants pin it, and they empty first.
        report("counts", f"root {root!r} has an empty tree but is not freed "
                         f"(refcount {root.refcount})")
        return
    active: dict[AnonVma, int] = {}
    for vma in vmas:
        if vma.anon_vma is not None:
            active[vma.anon_vma] = active.get(vma.anon_vma, 0) + 1
    # The members in set order first, without reports (no sort: this runs for every
    # family an event touched); only if something is wrong again by id, to report: the
    # order of the reports is part of the result and set order is by address.
    problems: list[str] = []
    _check_members(root, list(members), members, active, lambda inv, d: problems.append(inv))
    if problems:
        _check_members(root, sorted(members, key=by_id), members, active, report)


def _check_members(root: AnonVma, ordered: list[AnonVma], members: set[AnonVma],
                   active: dict[AnonVma, int], report: Report) -> None:
    children: dict[AnonVma, int] = {}
    non_root = 0
    for m in ordered:
        if m.freed:
            report("links", f"freed {m!r} is still chained in {root!r}'s family")
            continue
        if m.root is not root:
            report("counts", f"{m!r} in {root!r}'s family has root {m.root!r}")
        if m is not root:
            non_root += 1
            if m.parent not in members:
                report("counts", f"{m!r}'s parent {m.parent!r} is not in its family")
            children[m.parent] = children.get(m.parent, 0) + 1
            if m.refcount != 1:
                report("counts", f"{m!r} has refcount {m.refcount}, expected 1")
    children[root] = children.get(root, 0) + 1            # the root's self-parent link
    for m in ordered:
        if m.freed:
            continue
        if m.num_active_vmas != active.get(m, 0):
            report("counts", f"{m!r}.num_active_vmas = {m.num_active_vmas}, but "
                             f"{active.get(m, 0)} VMA(s) use it")
        if m.num_children != children.get(m, 0):
            report("counts", f"{m!r}.num_children = {m.num_children}, but it has "
                             f"{children.get(m, 0)} (self-link included for the root)")
    if root.refcount != 1 + non_root:
        report("counts", f"root {root!r} refcount {root.refcount}, expected {1 + non_root}")


def _ids(avs) -> str:
    return "{" + ",".join(repr(a) for a in sorted(avs, key=by_id)) + "}"
