"""The invariant checks report each broken rule, in address order, and nothing on a sound
rmap.  The states are built by a real replay, then damaged by hand: the expected reports
are written from the damage done (hand-computed), not taken from a run."""

from __future__ import annotations

from rmaplab.model import Kernel
from rmaplab.model.invariants import check_family, check_mm, check_mm_range
from rmaplab.model.structs import PAGE_SHIFT, AnonVma, AnonVmaChain

PAGE = 1 << PAGE_SHIFT
BASE = 0x10000000


def _three_faulted_vmas() -> Kernel:
    """pid 1: three separate anon VMAs, one page written in each; pid 2 forked from it."""
    k = Kernel("v6.0", check="off")
    k.apply({"op": "spawn", "pid": 1})
    for i in range(3):
        start = BASE + 2 * i * PAGE                # a gap between each: no merging
        k.apply({"op": "mmap", "pid": 1, "start": start, "end": start + PAGE, "prot": "rw"})
        k.apply({"op": "touch", "pid": 1, "addr": start, "write": True})
    k.apply({"op": "fork", "pid": 1, "child": 2})
    return k


def _reports(k: Kernel, pid: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    check_mm(k.mms[pid], lambda inv, detail: out.append((inv, detail)))
    return out


def test_a_sound_state_reports_nothing():
    k = _three_faulted_vmas()
    assert _reports(k, 1) == [] and _reports(k, 2) == []
    out: list = []
    for vma in k.mms[2].vmas:
        check_family(vma.anon_vma.root, lambda inv, detail: out.append(inv))
    assert out == []


def test_pages_off_their_vmas_chain_are_reported_in_address_order():
    k = _three_faulted_vmas()
    mm = k.mms[1]
    stranger = AnonVma(999)
    # Damage the third page, then the first: reports must still come lowest address first.
    for i in (2, 0):
        mm.pages[(BASE + 2 * i * PAGE) >> PAGE_SHIFT].mapping = stranger
    got = _reports(k, 1)
    assert [inv for inv, _ in got] == ["page-unreachable", "page-unreachable"]
    assert f"{BASE:#x}" in got[0][1] and f"{BASE + 4 * PAGE:#x}" in got[1][1]
    assert all("AV999" in detail for _, detail in got)


def test_a_page_outside_every_vma_and_a_freed_mapping_are_reported():
    k = _three_faulted_vmas()
    mm = k.mms[1]
    page = mm.pages[BASE >> PAGE_SHIFT]
    mm.pages[(BASE + PAGE) >> PAGE_SHIFT] = page            # in the gap after VMA 1
    mm.pages[(BASE + 2 * PAGE) >> PAGE_SHIFT].mapping.freed = True
    got = [inv for inv, _ in _reports(k, 1)]
    # The freed anon_vma is on VMA 2's chain too: a links report first, then the pages.
    assert got == ["links", "page-unreachable", "page-mapping-freed"]


def test_vmas_sharing_an_anon_vma_with_different_chains_are_reported():
    k = _three_faulted_vmas()
    first, second, _ = k.mms[2].vmas
    # The second child VMA now claims the first's anon_vma but keeps its own chain.
    second.anon_vma = first.anon_vma
    got = _reports(k, 2)
    invs = [inv for inv, _ in got]
    assert invs == ["links", "same-anon_vma-same-chain"]
    assert "is not on its chain" in got[0][1]


def test_equal_chains_in_another_order_are_the_same_chain():
    k = _three_faulted_vmas()
    first, second, _ = k.mms[2].vmas
    # Two VMAs sharing an anon_vma, with the same AVC targets in opposite orders.
    second.anon_vma = first.anon_vma
    second.chain[:] = [AnonVmaChain(second, avc.anon_vma) for avc in reversed(first.chain)]
    k.mms[2].pages.pop(second.start >> PAGE_SHIFT, None)   # its page maps the old chain
    for avc in second.chain:
        avc.anon_vma.avcs.add(avc)
    assert _reports(k, 2) == []


def test_a_chain_without_an_anon_vma_is_reported():
    k = _three_faulted_vmas()
    vma = k.mms[1].vmas[1]
    vma.anon_vma = None
    got = [inv for inv, _ in _reports(k, 1)]
    # Its page stays reachable (the chain still links its anon_vma): only the pointer is.
    assert got == ["links"]


def test_family_counts_are_reported_member_by_member_in_id_order():
    k = _three_faulted_vmas()
    k.apply({"op": "fork", "pid": 2, "child": 3})            # a third generation
    root = k.mms[1].vmas[0].anon_vma
    child = k.mms[2].vmas[0].anon_vma
    grandchild = k.mms[3].vmas[0].anon_vma
    assert root.id < child.id < grandchild.id and child.parent is root
    ok: list = []
    check_family(root, lambda inv, detail: ok.append(inv))
    assert ok == []
    # Damage the youngest first: the reports still come oldest (lowest id) first.
    grandchild.refcount = 2
    child.refcount = 3
    child.num_active_vmas += 1
    got: list[tuple[str, str]] = []
    check_family(root, lambda inv, detail: got.append((inv, detail)))
    assert [inv for inv, _ in got] == ["counts", "counts", "counts"]
    assert got[0][1].startswith(f"{child!r} has refcount 3")            # first loop, by id
    assert got[1][1].startswith(f"{grandchild!r} has refcount 2")
    assert got[2][1].startswith(f"{child!r}.num_active_vmas")           # second loop


# ---------------------------------------------------------------- check_mm_range
def _split_in_three() -> Kernel:
    """pid 1: one anon VMA [BASE, BASE + 6 pages) written, then split by an mprotect of
    its middle two pages: three VMAs A | B | C sharing one anon_vma (and chain)."""
    k = Kernel("v6.0", check="off")
    k.apply({"op": "spawn", "pid": 1})
    k.apply({"op": "mmap", "pid": 1, "start": BASE, "end": BASE + 6 * PAGE, "prot": "rw"})
    k.apply({"op": "touch", "pid": 1, "addr": BASE, "write": True})
    k.apply({"op": "mprotect", "pid": 1, "start": BASE + 2 * PAGE, "end": BASE + 4 * PAGE,
             "prot": "r"})
    a, b, c = k.mms[1].vmas
    assert a.anon_vma is b.anon_vma is c.anon_vma
    return k


def _range_reports(k: Kernel, pid: int, lo: int, hi: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    check_mm_range(k.mms[pid], lo, hi, lambda inv, detail: out.append((inv, detail)))
    return out


def test_a_range_reports_what_the_whole_mm_does_for_damage_inside_it():
    k = _split_in_three()
    a, b, c = k.mms[1].vmas
    # A's chain gains an anon_vma B and C do not have: A is the first user, so the whole
    # mm check reports B and C, one of them (C) outside a range that only covers A.
    stranger = AnonVma(999)
    avc = AnonVmaChain(a, stranger)
    a.chain.append(avc)
    stranger.avcs.add(avc)
    whole = _reports(k, 1)
    assert [inv for inv, _ in whole] == ["same-anon_vma-same-chain"] * 2
    assert repr(b) in whole[0][1] and repr(c) in whole[1][1]
    assert _range_reports(k, 1, BASE, BASE + PAGE) == whole
    # A range around C sees A and B through the anon_vma they share with C.
    assert _range_reports(k, 1, BASE + 5 * PAGE, BASE + 6 * PAGE) == whole


def test_a_range_does_not_report_damage_elsewhere_in_the_mm():
    """The contract of incremental checks: an event is checked where it worked."""
    k = _three_faulted_vmas()
    k.mms[1].vmas[2].anon_vma = None                  # the third VMA, 4 pages away
    assert [inv for inv, _ in _reports(k, 1)] == ["links"]
    assert _range_reports(k, 1, BASE, BASE + PAGE) == []
    assert [inv for inv, _ in _range_reports(k, 1, BASE + 4 * PAGE, BASE + 5 * PAGE)] == \
        ["links"]


def test_a_range_checks_the_order_against_the_vmas_around_it():
    k = _three_faulted_vmas()
    first, second, third = k.mms[1].vmas
    second.end = third.start + PAGE                   # now overlaps the third VMA
    whole = _reports(k, 1)
    # (The third VMA's page is now looked up in the second, whose chain lacks it.)
    assert whole[0] == ("links", f"pid 1: VMA list unsorted or overlapping at {third!r}")
    assert [inv for inv, _ in whole] == ["links", "page-unreachable"]
    assert _range_reports(k, 1, second.start, second.start + PAGE) == whole
    second.end, second.start = second.start + PAGE, first.end - PAGE   # overlaps the first
    whole = _reports(k, 1)
    assert whole == [("links", f"pid 1: VMA list unsorted or overlapping at {second!r}")]
    assert _range_reports(k, 1, second.end - PAGE, second.end) == whole


def test_a_page_left_in_an_unmapped_range_is_reported():
    k = _three_faulted_vmas()
    mm = k.mms[1]
    middle = mm.vmas.pop(1)                           # unmapped without its page
    assert middle.start >> PAGE_SHIFT in mm.pages
    got = _range_reports(k, 1, middle.start, middle.end)
    assert got == [("page-unreachable",
                    f"pid 1: page at {middle.start:#x} is outside every VMA")]
    assert got == _reports(k, 1)


def test_a_range_checks_every_page_of_the_vmas_it_reaches():
    """A VMA reaching into the range is checked whole: its chain serves all its pages."""
    k = Kernel("v6.0", check="off")
    k.apply({"op": "spawn", "pid": 1})
    k.apply({"op": "mmap", "pid": 1, "start": BASE, "end": BASE + 4 * PAGE, "prot": "rw"})
    for i in (0, 3):
        k.apply({"op": "touch", "pid": 1, "addr": BASE + i * PAGE, "write": True})
    vma = k.mms[1].vmas[0]
    vma.chain[0].anon_vma.avcs.clear()                # its anon_vma forgets it, then
    vma.chain.clear()                                 # it forgets its anon_vma
    whole = _reports(k, 1)
    assert [inv for inv, _ in whole] == ["links"] + ["page-unreachable"] * 2
    assert f"{BASE + 3 * PAGE:#x}" in whole[2][1]
    assert _range_reports(k, 1, BASE, BASE + PAGE) == whole


def test_a_vma_twice_in_its_roots_tree_is_not_taken_for_two_users():
    """The quick family check counts users per AVC of the tree: a VMA linked to its root
    twice, with num_active_vmas raised to match, must still be reported.  (Found by
    review: the quick check passed it.)"""
    k = _three_faulted_vmas()
    vma = k.mms[1].vmas[0]
    root = vma.anon_vma
    twice = AnonVmaChain(vma, root)
    vma.chain.append(twice)
    root.avcs.add(twice)
    root.num_active_vmas = 2
    got: list = []
    check_family(root, lambda inv, detail: got.append((inv, detail)))
    assert got == [("counts", f"{root!r}.num_active_vmas = 2, but 1 VMA(s) use it")]
