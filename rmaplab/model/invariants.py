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
``check_mm_range`` is check_mm for the part of an address space that one event over
[lo, hi) can change (the incremental checks): the VMAs there and one on each side, every
VMA of the mm sharing an anon_vma with them, the pages under them.  Given a state where
check_mm's rules held (or were reported) outside that part, it reports what check_mm
would, in check_mm's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from rmaplab.model.structs import PAGE_SHIFT, AnonVma, Mm, Page, Vma
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
        if vma.anon_vma is None and not vma.chain:
            continue            # nothing chained, nothing to compare: most VMAs
        if _check_links(mm, vma, report):
            _check_same_chain(mm, vma, first_user, report)
    if not mm.pages or _pages_reachable(mm, mm.pages):
        return
    _report_pages(mm, sorted(mm.pages), report)


def _check_links(mm: Mm, vma: Vma, report: Report) -> bool:
    """The links rules for one VMA with a chain or an anon_vma; True if it has an
    anon_vma on its chain to compare chains by."""
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
        report("links", f"pid {mm.pid}: {vma!r} has a chain but no anon_vma")
        return False
    if not _on_chain(vma, av):
        report("links", f"pid {mm.pid}: {vma!r}'s anon_vma {av!r} is not on its chain")
    return True


def _check_same_chain(mm: Mm, vma: Vma, first_user: dict[AnonVma, Vma],
                      report: Report) -> None:
    """vma (an anon_vma user, met in address order) against the first user of its
    anon_vma in this mm."""
    av = vma.anon_vma
    assert av is not None
    other = first_user.get(av)
    if other is None:
        first_user[av] = vma
    elif not _same_chain(other, vma):
        report("same-anon_vma-same-chain",
               f"pid {mm.pid}: VMAs sharing {av!r} have chains "
               f"{_ids(_chain_set(other))} and {_ids(_chain_set(vma))} (at {vma!r})")


def check_mm_range(mm: Mm, lo: int, hi: int, report: Report) -> None:
    """check_mm for what an event on [lo, hi) of mm can have changed (see the module's
    docstring): the VMAs that reach into [lo - 1, hi] -- a merge at either edge extends
    a neighbour, which then does -- checked against the list before and after them."""
    vmas = mm.vmas
    n = len(vmas)
    i0 = VmaMixin.vmas_from(mm, lo - 1)
    i1 = i0
    while i1 < n and vmas[i1].start <= hi:
        i1 += 1
    prev_end = vmas[i0 - 1].end if i0 > 0 else -1
    # Every other user in this mm of the window's anon_vmas: the same-chain rule compares
    # each with the first in address order, as check_mm does.  Found by a scan of the
    # list, not through the anon_vmas' trees: a VMA missing from its anon_vma's tree (a
    # links report) must still be compared.  Most windows use one anon_vma or none:
    # compared by identity, no list.
    one: AnonVma | None = None
    more: list[AnonVma] | None = None
    for i in range(i0, i1):
        av = vmas[i].anon_vma
        if av is None or av is one:
            continue
        if one is None:
            one = av
        elif more is None:
            more = [av]
        elif av not in more:
            more.append(av)
    outside: list[Vma] = _NO_VMAS             # in address order
    # Never written when the window uses no anon_vma: no VMA then reaches _check_same_chain.
    first_user: dict[AnonVma, Vma] = _NO_USERS
    if one is not None:
        outside = []
        _users(vmas, 0, i0, one, more, outside)
        _users(vmas, i1, n, one, more, outside)
        first_user = {}
    k = 0
    for i in range(i0, i1):
        vma = vmas[i]
        while k < len(outside) and outside[k].start < vma.start:   # users before it
            _check_same_chain(mm, outside[k], first_user, report)
            k += 1
        if vma.start < prev_end or vma.start >= vma.end:
            report("links", f"pid {mm.pid}: VMA list unsorted or overlapping at {vma!r}")
        prev_end = vma.end
        if vma.anon_vma is None and not vma.chain:
            continue
        if _check_links(mm, vma, report):
            _check_same_chain(mm, vma, first_user, report)
    if i1 < n and vmas[i1].start < prev_end:     # the first VMA after them
        report("links", f"pid {mm.pid}: VMA list unsorted or overlapping at {vmas[i1]!r}")
    while k < len(outside):
        _check_same_chain(mm, outside[k], first_user, report)
        k += 1
    # The pages under the window, and under [lo, hi) if no VMA covers it any more.
    if not mm.pages:
        return
    first = lo if i0 == i1 else min(lo, vmas[i0].start)
    last = hi if i0 == i1 else max(hi, vmas[i1 - 1].end)
    vlo, vhi = first >> PAGE_SHIFT, (last + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT
    pages = mm.pages
    reach: _Reach | None = None                # made for the first page found: most find none
    sound = True
    if vhi - vlo < len(pages):               # the smaller of the window and the pages
        for vpn in range(vlo, vhi):
            page = pages.get(vpn)
            if page is not None:
                if reach is None:
                    reach = _Reach(mm)
                if not reach.ok(vpn, page):
                    sound = False
                    break
    else:
        # By key: the pages outside the window (most) are not touched.
        for vpn in pages:
            if vlo <= vpn < vhi:
                if reach is None:
                    reach = _Reach(mm)
                if not reach.ok(vpn, pages[vpn]):
                    sound = False
                    break
    if not sound:
        _report_pages(mm, sorted([v for v in pages if vlo <= v < vhi]), report)


def _users(vmas: list[Vma], lo: int, hi: int, one: AnonVma, more: list[AnonVma] | None,
           out: list[Vma]) -> None:
    """Append to out the VMAs of vmas[lo:hi] using anon_vma ``one`` or one in ``more``."""
    for i in range(lo, hi):
        av = vmas[i].anon_vma
        if av is not None and (av is one or (more is not None and av in more)):
            out.append(vmas[i])


# check_mm_range's outside users when the window uses no anon_vma: read, never appended to.
_NO_VMAS: Final[list[Vma]] = []
_NO_USERS: Final[dict[AnonVma, Vma]] = {}


def _report_pages(mm: Mm, vpns: list[int], report: Report) -> None:
    """Something is wrong: walk the pages (vpns, sorted) in address order to report each
    in turn."""
    vmas = mm.vmas
    j = 0
    for vpn in vpns:
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


def _pages_reachable(mm: Mm, vpns: Iterable[int]) -> bool:
    """True if the page at each of vpns (mapped in mm) has a live anon_vma on the chain
    of the VMA that maps it: check_mm's page checks without reports, in the order given
    (no sort: this runs after every event of a checked replay)."""
    pages = mm.pages
    reach = _Reach(mm)
    for vpn in vpns:
        if not reach.ok(vpn, pages[vpn]):
            return False
    return True


class _Reach:
    """check_mm's page rules for one page at a time, without reports.  Pages come in
    dict order, not sorted, but mostly under the VMA of the page before and mapping the
    same anon_vma: that VMA and the last anon_vma found on its chain are kept."""

    __slots__ = ("mm", "vma", "found")

    def __init__(self, mm: Mm) -> None:
        self.mm = mm
        self.vma: Vma | None = None
        self.found: AnonVma | None = None         # on self.vma's chain

    def ok(self, vpn: int, page: Page) -> bool:
        mapping = page.mapping
        if mapping.freed:
            return False
        addr = vpn << PAGE_SHIFT
        vma = self.vma
        if vma is None or not vma.start <= addr < vma.end:
            vmas = self.mm.vmas
            i = VmaMixin.vmas_from(self.mm, addr)   # the first VMA ending after addr
            if i == len(vmas) or vmas[i].start > addr:
                return False
            vma = self.vma = vmas[i]
            self.found = None
        if mapping is self.found:
            return True
        if not _on_chain(vma, mapping):
            return False
        self.found = mapping
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
    if not root.avcs:
        # An emptied root lives on only while descendants pin it, and they empty first.
        report("counts", f"root {root!r} has an empty tree but is not freed "
                         f"(refcount {root.refcount})")
        return
    if _family_sound(root):
        return
    # Something is wrong: the members by id, to report (the order of the reports is part
    # of the result; set order is by address).
    vmas, members = family(root)
    active: dict[AnonVma, int] = {}
    for vma in vmas:
        if vma.anon_vma is not None:
            active[vma.anon_vma] = active.get(vma.anon_vma, 0) + 1
    _check_members(root, sorted(members, key=by_id), members, active, report)


def _family_sound(root: AnonVma) -> bool:
    """True only if check_family would report nothing for root (live, its own root and
    parent, a non-empty tree): the same rules without reports or sorting -- this runs for
    every family an event touched.  The counts go in each member's scratch fields under
    a fresh token, not in dicts.  False may be wrong the other way (a VMA whose chain
    does not start with the root's AVC, a VMA using an anon_vma not on its chain); the
    full check then decides."""
    token = _Token()
    members: list[AnonVma] = []
    for avc in root.avcs:
        chain = avc.vma.chain
        if not chain or chain[0] is not avc:
            # Not the usual shape (the root's AVC heads the chain of each VMA of the
            # family), or a VMA in the tree twice, which the counts below would count
            # twice: the full check decides.
            return False
        for link in chain:
            m = link.anon_vma
            if m.mark is not token:
                m.mark = token
                m.users = 0
                m.kids = 0
                members.append(m)
    if root.mark is not token:
        return False
    for avc in root.avcs:                   # VMAs of the family using each member
        av = avc.vma.anon_vma
        if av is not None:
            if av.mark is not token:
                return False
            av.users += 1
    root.kids = 1                           # the root's self-parent link
    non_root = 0
    for m in members:
        if m.freed or m.root is not root:
            return False
        if m is not root:
            non_root += 1
            parent = m.parent
            if m.refcount != 1 or parent.mark is not token:
                return False
            parent.kids += 1
    for m in members:
        if m.num_active_vmas != m.users or m.num_children != m.kids:
            return False
    return root.refcount == 1 + non_root


class _Token:
    """A check's mark: members carry it while their scratch counts are this check's."""

    __slots__ = ()


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
