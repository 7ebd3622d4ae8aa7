"""The invariant checks report each broken rule, in address order, and nothing on a sound
rmap.  The states are built by a real replay, then damaged by hand: the expected reports
are written from the damage done (hand-computed), not taken from a run."""

from __future__ import annotations

from rmaplab.model import Kernel
from rmaplab.model.invariants import check_family, check_mm
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
