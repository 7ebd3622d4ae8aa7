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

from rmaplab.model.structs import PAGE_SHIFT, AnonVma, Mm

Report = Callable[[str, str], None]


def check_mm(mm: Mm, report: Report) -> None:
    prev_end = -1
    by_anon_vma: dict[AnonVma, frozenset] = {}
    chain_sets = {}
    for vma in mm.vmas:
        if vma.start < prev_end or vma.start >= vma.end:
            report("links", f"pid {mm.pid}: VMA list unsorted or overlapping at {vma!r}")
        prev_end = vma.end
        avs = frozenset(avc.anon_vma for avc in vma.chain)
        chain_sets[vma] = avs
        for avc in vma.chain:
            if avc.vma is not vma:
                report("links", f"pid {mm.pid}: AVC on {vma!r}'s chain points to {avc.vma!r}")
            if avc.anon_vma.freed:
                report("links",
                       f"pid {mm.pid}: {vma!r} is chained to freed {avc.anon_vma!r}")
            elif avc not in avc.anon_vma.avcs:
                report("links", f"pid {mm.pid}: {vma!r}'s AVC missing from {avc.anon_vma!r}'s tree")
        av = vma.anon_vma
        if av is None:
            if vma.chain:
                report("links", f"pid {mm.pid}: {vma!r} has a chain but no anon_vma")
            continue
        if av not in avs:
            report("links", f"pid {mm.pid}: {vma!r}'s anon_vma {av!r} is not on its chain")
        other = by_anon_vma.get(av)
        if other is None:
            by_anon_vma[av] = avs
        elif other != avs:
            report("same-anon_vma-same-chain",
                   f"pid {mm.pid}: VMAs sharing {av!r} have chains "
                   f"{_ids(other)} and {_ids(avs)} (at {vma!r})")
    if not mm.pages:
        return
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
        if page.mapping not in chain_sets[at]:
            report("page-unreachable",
                   f"pid {mm.pid}: page at {addr:#x} maps {page.mapping!r}, not on {at!r}'s "
                   f"chain {_ids(chain_sets[at])}: an rmap walk cannot find this mapping")


def by_id(anon_vma: AnonVma) -> int:
    """Sort key: an anon_vma's id (unique in a Kernel, in order of allocation)."""
    return anon_vma.id


def family(root: AnonVma) -> tuple[set, set]:
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
    children: dict[AnonVma, int] = {}
    non_root = 0
    # By id, not set order (by address): the order of the reports is part of the result.
    ordered = sorted(members, key=by_id)
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
