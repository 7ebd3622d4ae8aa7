"""The model against hand-computed cases, most of them measured on this machine's 6.18 kernel.

Expected counts come from research/measure.md section 2 (perf tracepoint counts of
the same micro workloads on Linux 6.18) and from working mm/rmap.c by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmaplab import traces, workloads
from rmaplab.model import POLICIES, Kernel


def run(events, policy="v6.0", check="full"):
    return traces.replay(workloads.numbered(events), policy=policy, check=check)


def kernel_after(events, policy="v6.0"):
    """The model kernel (invariants fully checked) after the events."""
    kernel = Kernel(policy, check="full")
    for _, ev in workloads.numbered(events):
        kernel.apply(ev)
    return kernel


def split_then_fork(k):
    return workloads.split(k, 0) + [{"op": "fork", "pid": 1, "child": 2}]


def delta(name, k, n, policy="v6.0", key="anon_vma_alloc"):
    make = workloads.WORKLOADS[name]
    return run(make(k, n), policy).counters[key] - run(make(k, 0), policy).counters[key]


@pytest.mark.parametrize("shape", ["split", "sep"])
@pytest.mark.parametrize("k", [1, 4, 16, 64])
def test_fork_of_exec_parent_costs_k_anon_vmas_and_2k_avcs(shape, k):
    """Measured on 6.18: per fork +K anon_vma, +2K AVC for split and separate VMAs alike."""
    n = 10
    assert delta(shape, k, n) == k * n
    assert delta(shape, k, n, key="avc_alloc") == 2 * k * n
    assert delta(shape, k, n, key="anon_vma_fork") == k * n
    assert delta(shape, k, n, key="avc_clone_fork") == k * n
    assert delta(shape, k, n, key="avc_fork") == k * n


@pytest.mark.parametrize("k", [1, 4, 16, 64])
def test_split_setup_costs_one_anon_vma_and_k_avcs(k):
    """Measured: split region setup = 1 anon_vma + 1 prepare AVC + (K-1) split clones."""
    c = run(workloads.split(k, 0)).counters
    assert c["anon_vma_alloc"] == 1 and c["anon_vma_prepare"] == 1
    assert c["avc_prepare"] == 1 and c["avc_clone_split"] == k - 1


@pytest.mark.parametrize("k", [4, 16, 64])
def test_separate_setup_costs_k_anon_vmas(k):
    c = run(workloads.sep(k, 0)).counters
    assert c["anon_vma_alloc"] == k and c["avc_alloc"] == k


def per_generation(name, k, d, key):
    """Cost of the fork that creates generation d: (d) - (d-1), region part (minus K=0)."""
    make = workloads.WORKLOADS[name]

    def total(kk, dd):
        return run(make(kk, dd)).counters[key]

    return (total(k, d) - total(k, d - 1)) - (total(0, d) - total(0, d - 1))


@pytest.mark.parametrize("d", [1, 2, 3, 4, 8])
def test_chain_with_live_ancestors_adds_k_times_d_plus_1_avcs(d):
    """Measured (chainw, K=16): the fork creating generation d costs 16 anon_vma, 16(d+1) AVC."""
    assert per_generation("chainw", 16, d, "anon_vma_alloc") == 16
    assert per_generation("chainw", 16, d, "avc_alloc") == 16 * (d + 1)


@pytest.mark.parametrize("d, av, avc", [(1, 16, 32), (2, 16, 48), (3, 0, 48), (4, 0, 48),
                                        (8, 0, 48)])
def test_chain_with_exited_parents_reuses_from_the_third_generation(d, av, avc):
    """Measured (chainx, K=16): 16/32, 16/48, then 0 new anon_vmas and 3 AVCs per VMA."""
    assert per_generation("chainx", 16, d, "anon_vma_alloc") == av
    assert per_generation("chainx", 16, d, "avc_alloc") == avc


def test_chain_totals_match_measurement():
    """Measured totals over 8 generations, K=16: chainw 128 anon_vma / 704 AVC, chainx 32 / 368."""
    def region(name, key):
        make = workloads.WORKLOADS[name]
        full = run(make(16, 8)).counters[key] - run(make(16, 0)).counters[key]
        base = run(make(0, 8)).counters[key] - run(make(0, 0)).counters[key]
        return full - base
    assert (region("chainw", "anon_vma_alloc"), region("chainw", "avc_alloc")) == (128, 704)
    assert (region("chainx", "anon_vma_alloc"), region("chainx", "avc_alloc")) == (32, 368)


def test_every_object_is_freed_when_every_process_exits():
    events = workloads.chain_exited(8, 5) + [{"op": "exit", "pid": 1}]
    r = run(events)
    c = r.counters
    assert c["live_anon_vma"] == c["live_avc"] == c["live_vma"] == 0
    assert c["anon_vma_alloc"] == c["anon_vma_free"]
    assert c["avc_alloc"] == c["avc_free"] and c["vma_alloc"] == c["vma_free"]
    assert not r.violations


def test_v55_children_share_the_parents_anon_vma_after_the_first():
    """4e4a9eb92133 as merged: DST1 forks a new anon_vma, DST2..n take the parent's (Khlebnikov)."""
    k = 8
    k55 = kernel_after(split_then_fork(k), "v5.5")
    parent = [v for v in k55.mms[1].vmas if v.anon_vma is not None]
    child = [v for v in k55.mms[2].vmas if v.anon_vma is not None]
    assert len(parent) == len(child) == k
    assert child[0].anon_vma is not parent[0].anon_vma
    assert child[0].anon_vma.parent is parent[0].anon_vma
    assert all(c.anon_vma is parent[0].anon_vma for c in child[1:])
    assert k55.counters.anon_vma_fork == 1
    assert not k55.violations


def test_wei_intended_children_share_one_new_anon_vma():
    """The patch as described: the child's K split VMAs share one new anon_vma."""
    k = 8
    kw = kernel_after(split_then_fork(k), "wei-intended")
    child = [v for v in kw.mms[2].vmas if v.anon_vma is not None]
    assert len({id(v.anon_vma) for v in child}) == 1
    assert child[0].anon_vma.parent is kw.mms[1].vmas[1].anon_vma
    assert kw.counters.anon_vma_fork == 1
    # Each child VMA: one AVC per parent chain entry plus the shared anon_vma's.
    assert [len(v.chain) for v in child] == [2] * k
    assert not kw.violations


@pytest.mark.parametrize("policy", ["no-reuse", "v5.4", "v6.0"])
def test_policies_without_sharing_allocate_k_per_fork(policy):
    assert delta("split", 8, 5, policy) == 40


def test_no_reuse_never_reuses_in_a_chain():
    c = run(workloads.chain_exited(4, 6), "no-reuse").counters
    assert c["reuse_at_fork"] == 0
    assert c["anon_vma_fork"] == 4 * 6


def test_dontfork_region_costs_children_nothing():
    assert delta("dontfork", 16, 5) == 0
    assert delta("dontfork", 16, 5, key="avc_alloc") == 0


def test_wipeonfork_child_prepares_its_own_anon_vma_at_its_first_write():
    """6.x: no anon_vma at fork; each child write fault prepares one (one per VMA)."""
    c = run(workloads.wipeonfork(4, 3)).counters
    assert c["anon_vma_fork"] == 0
    assert c["anon_vma_prepare"] == 4 + 4 * 3


def test_wipeonfork_v54_prepares_at_fork_next_to_the_parents_neighbours():
    """Before v5.7 dup_mmap called anon_vma_prepare(tmp) at fork with the parent's links."""
    c = run(workloads.wipeonfork(4, 3), "v5.4").counters
    assert c["anon_vma_fork"] == 0
    assert c["anon_vma_prepare"] == 4 + 4 * 3


def test_brk_heap_expands_in_place_until_forked():
    c = run(workloads.brk_growth(8, 0)).counters
    assert c["vma_alloc"] == 1 and c["anon_vma_alloc"] == 1
    # After a fork the heap's chain is no longer singular: the child's next brk makes a new VMA.
    events = workloads.brk_growth(2, 0) + [
        {"op": "fork", "pid": 1, "child": 2},
        {"op": "brk", "pid": 2, "end": workloads.HEAP + 3 * workloads.PAGE},
    ]
    r = run(events)
    assert r.counters["vma_alloc"] == 1 + 1 + 1


def test_unrandomised_heap_is_not_merged_into_the_bss_but_takes_its_anon_vma():
    """brk() expands only a VMA reaching start_brk (vma_prev_limit(&vmi, mm->start_brk)):
    with brk not randomised the heap starts right after the ELF loader's bss, stays a VMA of
    its own, and its first write fault reuses the bss's anon_vma (find_mergeable_anon_vma).
    Hand-computed: 2 VMAs, 1 anon_vma, 2 AVCs at prepare.  The live kernel does the same
    (tests/test_capture.py, legacy-layout fixture)."""
    bss = workloads.HEAP - 2 * workloads.PAGE
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": bss, "end": workloads.HEAP, "prot": "rw"},
              {"op": "brk", "pid": 1, "end": workloads.HEAP},
              {"op": "brk", "pid": 1, "end": workloads.HEAP + 4 * workloads.PAGE},
              {"op": "touch", "pid": 1, "addr": bss, "write": True},
              {"op": "touch", "pid": 1, "addr": workloads.HEAP, "write": True}]
    kern = kernel_after(events)
    vmas = kern.mms[1].vmas
    assert [(v.start, v.end) for v in vmas] == [(bss, workloads.HEAP),
                                                (workloads.HEAP, workloads.HEAP + 4 * workloads.PAGE)]
    assert vmas[0].anon_vma is vmas[1].anon_vma is not None
    c = kern.counters
    assert (c.vma_alloc, c.anon_vma_prepare, c.avc_prepare) == (2, 1, 2)
    assert not kern.violations


def test_mprotect_back_merges_the_split_vmas():
    k = 8
    kern = kernel_after(workloads.mprotect_merge(k, 0))
    rw = [v for v in kern.mms[1].vmas if v.anon_vma is not None]
    assert len(rw) == 1 and rw[0].end - rw[0].start == k * workloads.PAGE
    assert kern.counters.live_avc == 1
    assert not kern.violations


def test_child_cow_then_parent_write_reuses_the_page_in_place():
    """After the child COWs, the parent's page is mapped once but not AnonExclusive:
    wp_can_reuse_anon_folio() reuses it (no copy) and re-points its rmap."""
    events = workloads.sep(1, 0) + [
        {"op": "fork", "pid": 1, "child": 2},
        {"op": "touch", "pid": 2, "addr": workloads._page(1), "write": True},
        {"op": "touch", "pid": 1, "addr": workloads._page(1), "write": True},
    ]
    kern = kernel_after(events)
    c = kern.counters
    assert (c.pages_new, c.pages_cow, c.pages_reused) == (1, 1, 1)
    parent_page = kern.mms[1].pages[workloads._page(1) >> 12]
    child_page = kern.mms[2].pages[workloads._page(1) >> 12]
    assert parent_page is not child_page
    assert parent_page.mapping is kern.mms[1].vmas[1].anon_vma
    assert child_page.mapping is kern.mms[2].vmas[1].anon_vma
    assert not kern.violations


def test_all_policies_are_named_as_in_the_design():
    assert list(POLICIES)[:5] == ["no-reuse", "v5.4", "v5.5", "wei-intended", "v6.0"]
    assert list(POLICIES)[5:] == ["v6.0+4e4a9eb", "v6.0+wei-intended"]


# ---------------------------------------------------------------- mremap (mm/mremap.c, 6.18)
P = 4096
R = 0x1000000000


def _page(i):
    return R + i * P


def _layout(kernel, pid=1):
    return [((v.start - R) // P, (v.end - R) // P) for v in kernel.mms[pid].vmas]


def test_mremap_move_that_shrinks_unmaps_the_dropped_tail_first():
    """mremap_to(): shrink_vma() unmaps [addr+new_len, addr+old_len) (two splits inside
    the VMA), then copy_vma() of the remaining whole VMA: 1 + 2 + 1 vm_area_structs."""
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": _page(5), "end": _page(11), "prot": "r"},
              {"op": "mremap", "pid": 1, "start": _page(5), "end": _page(9),
               "new_start": _page(36), "new_end": _page(39)}]
    k = kernel_after(events)
    assert k.counters.vma_alloc == 4
    assert _layout(k) == [(9, 11), (36, 39)]


def test_mremap_growth_in_place_merges_the_next_vma():
    """expand_vma_in_place() -> vma_merge_extend(): the grown VMA absorbs a compatible
    next VMA that becomes adjacent (vma_expand removes it): one VMA, no allocation."""
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": _page(0), "end": _page(2), "prot": "rw"},
              {"op": "mmap", "pid": 1, "start": _page(3), "end": _page(5), "prot": "rw"},
              {"op": "mremap", "pid": 1, "start": _page(0), "end": _page(2),
               "new_start": _page(0), "new_end": _page(3)}]
    k = kernel_after(events)
    assert _layout(k) == [(0, 5)]
    assert k.counters.vma_alloc == 2 and k.counters.vma_free == 1


def test_mremap_move_keeps_gaps_between_several_vmas():
    """remap_move() (6.17): a size-keeping move may span VMAs; each moves in turn and the
    gaps between them are kept at the destination."""
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": _page(0), "end": _page(2), "prot": "rw"},
              {"op": "mmap", "pid": 1, "start": _page(3), "end": _page(4), "prot": "r"},
              {"op": "mremap", "pid": 1, "start": _page(1), "end": _page(4),
               "new_start": _page(20), "new_end": _page(23)}]
    k = kernel_after(events)
    assert _layout(k) == [(0, 1), (20, 21), (22, 23)]
    assert k.counters.syscall_errors == 0


def test_mremap_of_a_faulted_vma_into_an_unfaulted_neighbour_dups_its_anon_vma():
    """61f67c230a5e: copy_vma() merging the faulted range into the unfaulted next VMA
    gives that VMA the anon_vma (one anon_vma_clone); a write there prepares nothing."""
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": _page(0), "end": _page(2), "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": _page(0), "write": True},
              {"op": "mremap", "pid": 1, "start": _page(0), "end": _page(2),
               "new_start": _page(32), "new_end": _page(34)},
              {"op": "mmap", "pid": 1, "start": _page(2), "end": _page(4), "prot": "rw"},
              {"op": "mremap", "pid": 1, "start": _page(32), "end": _page(34),
               "new_start": _page(0), "new_end": _page(2)},
              {"op": "touch", "pid": 1, "addr": _page(2), "write": True}]
    k = kernel_after(events)
    assert _layout(k) == [(0, 4)]
    c = k.counters
    assert (c.anon_vma_prepare, c.avc_clone_copy_vma, c.avc_clone_merge) == (1, 1, 1)
    assert k.violations == []


def test_mremap_refuses_to_merge_a_forked_faulted_vma_into_an_unfaulted_one():
    """"mm/vma: enforce VMA fork limit on unfaulted,faulted mremap merge": a forked VMA
    (more than one AVC) keeps its own VMA; the write to the neighbour prepares another."""
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": _page(0), "end": _page(2), "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": _page(0), "write": True},
              {"op": "fork", "pid": 1, "child": 2},
              {"op": "mremap", "pid": 2, "start": _page(0), "end": _page(2),
               "new_start": _page(32), "new_end": _page(34)},
              {"op": "mmap", "pid": 2, "start": _page(2), "end": _page(4), "prot": "rw"},
              {"op": "mremap", "pid": 2, "start": _page(32), "end": _page(34),
               "new_start": _page(0), "new_end": _page(2)},
              {"op": "touch", "pid": 2, "addr": _page(2), "write": True}]
    k = kernel_after(events)
    assert _layout(k, 2) == [(0, 2), (2, 4)]
    assert k.counters.anon_vma_prepare == 2


# ---------------------------------------------------------------- the patch on the v6.0 counters
@pytest.mark.parametrize("policy", ["v5.5", "v6.0+4e4a9eb"])
def test_patch_as_merged_on_either_counter_gives_children_the_parents_anon_vma(policy):
    """split(4) + fork, by hand: setup 1 anon_vma + 1 prepare AVC + 3 split clones; the fork
    clones the parent's one-entry chain for each of the 4 child VMAs (4 AVCs) and only
    VMA 1 gets a new anon_vma (+1 anon_vma, +1 AVC): 2 anon_vmas, 9 AVCs."""
    kern = kernel_after(split_then_fork(4), policy)
    c = kern.counters
    assert (c.anon_vma_alloc, c.anon_vma_fork, c.avc_alloc, c.avc_clone_fork) == (2, 1, 9, 4)
    parent_av = kern.mms[1].vmas[1].anon_vma
    child = [v for v in kern.mms[2].vmas if v.anon_vma is not None]
    assert [v.anon_vma is parent_av for v in child] == [False, True, True, True]
    # the shared anon_vma now has 4 + 3 active VMAs in two mms
    assert parent_av.num_active_vmas == 7
    assert not kern.violations


@pytest.mark.parametrize("policy", ["wei-intended", "v6.0+wei-intended"])
def test_patch_as_described_on_either_counter_shares_one_child_anon_vma(policy):
    """split(4) + fork, by hand: VMA 1 clones 1 AVC and forks 1 anon_vma + 1 AVC; VMAs 2..4
    share it and clone VMA 1's two-entry chain (2 AVCs each): 2 anon_vmas, 4 + 8 AVCs."""
    kern = kernel_after(split_then_fork(4), policy)
    c = kern.counters
    assert (c.anon_vma_alloc, c.anon_vma_fork, c.avc_alloc) == (2, 1, 12)
    child = [v for v in kern.mms[2].vmas if v.anon_vma is not None]
    assert len({id(v.anon_vma) for v in child}) == 1
    assert child[0].anon_vma.num_active_vmas == 4
    assert not kern.violations


@pytest.mark.parametrize("patched, counterpart", [("v6.0+4e4a9eb", "v5.5"),
                                                  ("v6.0+wei-intended", "wei-intended")])
def test_patch_on_v60_counters_differs_from_its_2019_counterpart_only_in_may_reuse(
        patched, counterpart):
    p, q = POLICIES[patched], POLICIES[counterpart]
    for rule in ("merge_rule", "reuse_needs_src_anon_vma", "stale_vm_prev",
                 "prepare_wipeonfork_at_fork"):
        assert getattr(p, rule) == getattr(q, rule), rule
    assert type(p).clone_preset is type(q).clone_preset
    assert type(p).fork_share is type(q).fork_share
    assert type(p).may_reuse is type(POLICIES["v6.0"]).may_reuse


# ---------------------------------------------------------------- merge rules of each era
def test_each_era_replays_with_its_own_merge_rule_unless_told_otherwise():
    rules = {name: Kernel(name).merge_rule for name in POLICIES}
    assert rules == {"no-reuse": "singular", "v5.4": "singular", "v5.5": "singular",
                     "wei-intended": "singular", "v6.0": "uncowed",
                     "v6.0+4e4a9eb": "singular", "v6.0+wei-intended": "singular"}
    assert Kernel("v5.4", merge_rule="uncowed").merge_rule == "uncowed"


def faulted_range_made_like_its_unfaulted_neighbour():
    """W = [0,2) r (never written) and X = [2,4) rw, written; then X is made r like W."""
    base = workloads.BASE
    page = workloads.PAGE
    return [
        {"op": "spawn", "pid": 1},
        {"op": "mmap", "pid": 1, "start": base, "end": base + 4 * page, "prot": "rw",
         "flags": ["noreserve"]},
        {"op": "mprotect", "pid": 1, "start": base, "end": base + 2 * page, "prot": "r"},
        {"op": "touch", "pid": 1, "addr": base + 2 * page, "write": True},
        {"op": "mprotect", "pid": 1, "start": base + 2 * page, "end": base + 4 * page,
         "prot": "r"},
    ]


def test_merge_rules_differ_on_a_faulted_range_next_to_an_unfaulted_neighbour():
    """By hand: the last mprotect asks W (no anon_vma, empty chain) to absorb X.  965f55dea0e3
    refuses (W's chain is not singular: Jann Horn's 2023 observation), so two VMAs and one
    AVC remain; 879bca0a2c4f lets W take X's anon_vma (dup_anon_vma: one more AVC) and drops
    X with its AVC: one VMA, two AVCs allocated, one live."""
    events = workloads.numbered(faulted_range_made_like_its_unfaulted_neighbour())
    old = traces.replay(events, policy="v6.0", merge_rule="singular", check="full")
    new = traces.replay(events, policy="v6.0", merge_rule="uncowed", check="full")
    assert (old.counters["live_vma"], old.counters["avc_alloc"], old.counters["live_avc"]) \
        == (2, 1, 1)
    assert (new.counters["live_vma"], new.counters["avc_alloc"], new.counters["live_avc"]) \
        == (1, 2, 1)
    assert new.counters["avc_clone_merge"] == 1
    assert old.counters["merge_rules_disagree"] == new.counters["merge_rules_disagree"] == 1
    assert not old.violations and not new.violations


# ---------------------------------------------------------------- 47b390d23bf8
def test_src_anon_vma_term_of_47b390d23bf8_is_in_v55_and_later_only():
    has = {name: p.reuse_needs_src_anon_vma for name, p in POLICIES.items()}
    assert has == {"no-reuse": False, "v5.4": False, "v5.5": True, "wei-intended": True,
                   "v6.0": True, "v6.0+4e4a9eb": True, "v6.0+wei-intended": True}


def test_src_anon_vma_term_decides_only_when_src_has_a_chain_but_no_anon_vma():
    """The term can matter only if anon_vma_clone() reaches its reuse test with
    dst->anon_vma == NULL and src->anon_vma == NULL, which needs a src with a chain and no
    anon_vma.  Built by hand (no event sequence makes one), it does decide: with the term
    dst gets no anon_vma; without it the degree rule reuses the child's leaf anon_vma
    (no children, one VMA: degree 1 < 2)."""
    from rmaplab.model.policies import variant
    from rmaplab.model.structs import Vma

    results = {}
    for policy in ("v5.4", variant("v5.4", "v5.4+47b390d23bf8", reuse_needs_src_anon_vma=True)):
        kern = kernel_after(workloads.sep(1, 0) + [{"op": "fork", "pid": 1, "child": 2}],
                            policy)
        vma = kern.mms[2].vmas[1]                 # chain {parent's root, child's leaf}
        leaf = vma.anon_vma
        src = Vma(99, vma.mm, vma.start, vma.end, vma.pgoff, vma.flags, None)
        src.chain = list(vma.chain)               # a chain, but src->anon_vma == NULL
        dst = Vma(100, vma.mm, vma.start, vma.end, vma.pgoff, vma.flags, None)
        kern.anon_vma_clone(dst, src, "copy_vma")
        results[kern.policy.name] = dst.anon_vma is leaf, dst.anon_vma is None
        assert kern.counters.reuse_test_src_null == 2     # once per chain entry
    assert results == {"v5.4": (True, False), "v5.4+47b390d23bf8": (False, True)}


# ---------------------------------------------------------------- rmap-walk lengths
def test_walk_length_counts_only_the_avcs_whose_vma_covers_the_page():
    """By hand: a 4-page VMA written once, forked; the child splits its copy into [0,2) and
    [2,4).  The parent's anon_vma tree holds 3 AVCs: the parent's [0,4) and the child's two
    halves; a page of the parent's VMA is covered by the parent's AVC and one child half:
    (4 + 2 + 2) / 4 = 2.0.  The child's own anon_vma holds its two halves' AVCs, but a page
    of [0,2) is covered by one of them: 1.0 (the tree has 2 AVCs)."""
    from rmaplab.model.observe import walk_length

    base, page = workloads.BASE, workloads.PAGE
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": base, "end": base + 4 * page, "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": base, "write": True},
              {"op": "fork", "pid": 1, "child": 2},
              {"op": "mprotect", "pid": 2, "start": base, "end": base + 2 * page, "prot": "r"}]
    kern = kernel_after(events)
    parent = kern.mms[1].vmas[0]
    low, high = kern.mms[2].vmas
    assert len(parent.anon_vma.avcs) == 3 and walk_length(parent) == 2.0
    assert low.anon_vma is high.anon_vma and len(low.anon_vma.avcs) == 2
    assert walk_length(low) == walk_length(high) == 1.0


def split_two_children_exit_in_turn(k):
    return split_then_fork(k) + [{"op": "fork", "pid": 1, "child": 3},
                                 {"op": "exit", "pid": 2}, {"op": "exit", "pid": 3}]


def walk_histogram(policy, events):
    kern = Kernel(policy, check="full", walks=True)
    for _, ev in workloads.numbered(events):
        kern.apply(ev)
    assert not kern.violations
    return {(r["moment"], r["side"], r["avcs"]): r["vmas"] for r in kern.walks.rows()}


@pytest.mark.parametrize("policy", ["v5.4", "v6.0", "wei-intended"])
def test_walks_of_children_with_their_own_anon_vma_visit_one_avc(policy):
    """split(4), two children alive together, then exiting in turn.  Each child's pages go
    to an anon_vma of its own (one AVC per page index): 1 for all 8 child VMAs, at fork and
    at exit.  The parent's anon_vma holds the parent's 4 AVCs plus 4 per live child: its
    pages cost 2 after the first fork, 3 after the second."""
    assert walk_histogram(policy, split_two_children_exit_in_turn(4)) == {
        ("fork", "child", 1.0): 8, ("fork", "parent", 2.0): 4, ("fork", "parent", 3.0): 4,
        ("end", "child", 1.0): 8}


@pytest.mark.parametrize("policy", ["v5.5", "v6.0+4e4a9eb"])
def test_walks_of_children_on_the_parents_anon_vma_grow_with_live_siblings(policy):
    """As merged, child VMAs 2..4 put their pages in the parent's anon_vma: 2 AVCs per page
    after the first fork (parent + child 2), 3 after the second; at exit child 2 still sees
    child 3 (3), child 3 sees only the parent (2).  VMA 1 of each child has its own (1)."""
    assert walk_histogram(policy, split_two_children_exit_in_turn(4)) == {
        ("fork", "child", 1.0): 2, ("fork", "child", 2.0): 3, ("fork", "child", 3.0): 3,
        ("fork", "parent", 2.0): 4, ("fork", "parent", 3.0): 4,
        ("end", "child", 1.0): 2, ("end", "child", 2.0): 3, ("end", "child", 3.0): 3}


def test_walk_summary_weights_by_vma():
    from rmaplab.model.observe import walk_summary

    rows = [{"moment": "fork", "side": "child", "avcs": 1.0, "vmas": 8},
            {"moment": "fork", "side": "child", "avcs": 4.0, "vmas": 2},
            {"moment": "end", "side": "child", "avcs": 9.0, "vmas": 1}]
    s = walk_summary(rows, "fork", "child")
    assert s["vmas"] == 10 and s["mean"] == pytest.approx((8 + 8) / 10)
    assert (s["p50"], s["p90"], s["max"]) == (1.0, 4.0, 4.0)


def test_reuse_rule_names_the_test_that_runs():
    assert {n: p.reuse_rule for n, p in POLICIES.items()} == {
        "no-reuse": "none", "v5.4": "degree", "v5.5": "degree", "wei-intended": "degree",
        "v6.0": "counters", "v6.0+4e4a9eb": "counters", "v6.0+wei-intended": "counters"}


@pytest.mark.parametrize("policy, shares", [("v5.5", (3, 2)), ("v6.0+4e4a9eb", (3, 2)),
                                            ("wei-intended", (3, 3))])
def test_as_merged_a_forked_child_shares_one_vma_less_per_run(policy, shares):
    """split(4) forked twice down a chain (1 -> 2 -> 3).  The first fork shares for VMAs 2..4
    either way.  As merged, child 2's VMA 1 got a new anon_vma and VMAs 2..4 the parent's, so
    at child 2's fork VMA 2's previous VMA no longer shares its anon_vma: VMAs 3 and 4 share
    (2).  As described, child 2's four VMAs share one anon_vma, so VMAs 2..4 share again (3).
    A run of two VMAs (a library's RELRO and data pages) shares nothing at the second fork."""
    kern = kernel_after(split_then_fork(4) + [{"op": "fork", "pid": 2, "child": 3}], policy)
    c = kern.counters
    assert (c.mm_forks, c.mm_forks_by_forked) == (2, 1)
    assert (c.share_at_fork - c.share_at_fork_by_forked, c.share_at_fork_by_forked) == shares


def test_mremap_dontunmap_of_part_of_a_vma_moves_it_once():
    """remap_move() walks the VMAs of [start, end) once: with MREMAP_DONTUNMAP the source
    stays mapped, so the walk must stop at end, not find the source again (found as a hang
    on the recorded tests/data/perf/script-mremap-merge-uaf-adjacent.txt)."""
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": _page(20), "end": _page(26), "prot": "rw"},
              {"op": "mremap", "pid": 1, "start": _page(20), "end": _page(23),
               "new_start": _page(4), "new_end": _page(7), "dontunmap": True}]
    k = kernel_after(events)
    layout = _layout(k)
    assert layout[0] == (4, 7)                          # moved once
    assert (layout[1][0], layout[-1][1]) == (20, 26)    # the source stays mapped
    assert k.counters.syscall_errors == 0


# ------------------------------------------------------------------ MAP_STACK, THP advices
MERGETEST_4 = Path(__file__).parent / "data" / "mapstack" / "mergetest-4.jsonl"
COUNTED = ("anon_vma_prepare", "avc_prepare", "avc_clone", "vma_alloc", "anon_vma_alloc",
           "avc_alloc", "syscall_errors")


def _counts(events, thp):
    return {k: v for k, v in traces.replay(events, check="full", thp=thp).counters.items()
            if k in COUNTED}


@pytest.mark.parametrize("thp, expected", [
    # THP (the host, 6.18): the stack gets VM_NOHUGEPAGE (calc_vm_flag_bits), so it does not
    # merge with the written VMA before it (is_mergeable_vma) and its first write cannot
    # reuse that VMA's anon_vma (anon_vma_compatible): a second anon_vma and AVC at prepare;
    # the munmap removes a whole VMA: no split.  2 VMAs.
    (True, {"anon_vma_prepare": 2, "avc_prepare": 2, "avc_clone": 0, "vma_alloc": 2,
            "anon_vma_alloc": 2, "avc_alloc": 2, "syscall_errors": 0}),
    # No THP (UML 6.12): MAP_STACK sets nothing; the stack merges into the written VMA
    # (vma_expand), its write finds the anon_vma there; the munmap splits the merged VMA
    # (__split_vma: one vm_area_dup, one anon_vma_clone AVC).
    (False, {"anon_vma_prepare": 1, "avc_prepare": 1, "avc_clone": 1, "vma_alloc": 2,
             "anon_vma_alloc": 1, "avc_alloc": 2, "syscall_errors": 0}),
])
def test_map_stack_keeps_its_vma_and_anon_vma_apart_only_with_thp(thp, expected):
    """mergetest 4, measured on both kernels (notes/uml-prepare-gap-findings.md): host 2
    prepares and no split clone, UML guest 1 prepare and 1 clone."""
    events = traces.load(MERGETEST_4)
    assert _counts(events, thp) == expected


def test_a_trace_without_the_stack_field_replays_as_before_with_or_without_thp():
    """mergetest 5 (mergetest 4 without MAP_STACK): 1 prepare + 1 clone on both kernels."""
    events = [(i, {k: v for k, v in ev.items() if k != "stack"})
              for i, ev in traces.load(MERGETEST_4)]
    assert _counts(events, True) == _counts(events, False) == {
        "anon_vma_prepare": 1, "avc_prepare": 1, "avc_clone": 1, "vma_alloc": 2,
        "anon_vma_alloc": 1, "avc_alloc": 2, "syscall_errors": 0}


def test_madvise_hugepage_and_nohugepage_change_flags_only_with_thp():
    """A = [0,2) written; B = [2,5) merges into A; madvise(B, NOHUGEPAGE) splits it off
    (one vm_area_dup + one anon_vma_clone); madvise(B, HUGEPAGE) swaps the bit (no merge
    back: VM_HUGEPAGE still differs from A); C = [5,7) then cannot merge with B nor reuse
    its anon_vma: a second anon_vma.  Without THP both advices are -EINVAL
    (madvise_behavior_valid) and C merges into A, whose anon_vma covers its write."""
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": _page(0), "end": _page(2), "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": _page(0), "write": True},
              {"op": "mmap", "pid": 1, "start": _page(2), "end": _page(5), "prot": "rw"},
              {"op": "madvise", "pid": 1, "start": _page(2), "end": _page(5),
               "advice": "nohugepage"},
              {"op": "madvise", "pid": 1, "start": _page(2), "end": _page(5),
               "advice": "hugepage"},
              {"op": "mmap", "pid": 1, "start": _page(5), "end": _page(7), "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": _page(5), "write": True}]
    numbered = [(i, traces.validate(ev, "<test>", i)) for i, ev in enumerate(events, 1)]
    assert _counts(numbered, True) == {
        "anon_vma_prepare": 2, "avc_prepare": 2, "avc_clone": 1, "vma_alloc": 3,
        "anon_vma_alloc": 2, "avc_alloc": 3, "syscall_errors": 0}
    assert _counts(numbered, False) == {
        "anon_vma_prepare": 1, "avc_prepare": 1, "avc_clone": 0, "vma_alloc": 1,
        "anon_vma_alloc": 1, "avc_alloc": 1, "syscall_errors": 2}
    k = Kernel(thp=True)
    for _, ev in numbered:
        k.apply(ev)
    assert _layout(k) == [(0, 2), (2, 5), (5, 7)]


def test_policy_hooks_are_called_where_overridden_on_the_class_or_the_instance():
    """Kernel reads a policy once (PolicyRules) and calls only the hooks it overrides:
    an override on a subclass or set on the instance must still run."""
    import copy

    from rmaplab.model.policies import V60, get_policy

    class DeferAll(V60):
        def defer_anon_vma(self, vma, site):
            return True

    on_instance = copy.copy(get_policy("v6.0"))
    on_instance.defer_anon_vma = lambda vma, site: True
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": 0x10000, "end": 0x12000, "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": 0x10000, "write": True}]
    for policy, deferred in ((DeferAll(), 1), (on_instance, 1), (get_policy("v6.0"), 0)):
        kernel = Kernel(policy, check="full")
        for ev in events:
            kernel.apply(ev)
        assert kernel.counters.anon_vma_deferred == deferred
        assert kernel.counters.anon_vma_alloc == 1 - deferred


def _brk_kernel():
    """pid 1: a heap [H, H + 2 pages) made by brk, and a mapping 4 pages above it."""
    kernel = Kernel("v6.0", check="full")
    for ev in ({"op": "spawn", "pid": 1},
               {"op": "brk", "pid": 1, "start": HEAP, "end": HEAP},
               {"op": "brk", "pid": 1, "end": HEAP + 2 * PAGE},
               {"op": "mmap", "pid": 1, "start": HEAP + 6 * PAGE, "end": HEAP + 7 * PAGE,
                "prot": "rw"}):
        kernel.apply(ev)
    return kernel


HEAP, PAGE = 0x20000000, 4096


@pytest.mark.parametrize("end, refused", [
    (HEAP + 5 * PAGE, False),        # newbrk + PAGE_SIZE == the mapping's start: allowed
    (HEAP + 5 * PAGE + 1, True),     # PAGE_ALIGN: 6 pages, into the guard page
    (HEAP + 8 * PAGE, True),         # over the mapping
])
def test_brk_does_not_grow_into_a_mapping(end, refused):
    """brk() (mm/mmap.c, v6.1+): "if (next && newbrk + PAGE_SIZE > vm_start_gap(next))
    goto out" -- the break stays where it was and no VMA is added."""
    kernel = _brk_kernel()
    kernel.apply({"op": "brk", "pid": 1, "end": end})
    mm = kernel.mms[1]
    assert kernel.counters.syscall_errors == int(refused)
    assert mm.brk == (HEAP + 2 * PAGE if refused else end)
    assert [(v.start, v.end) for v in mm.vmas] == [
        (HEAP, HEAP + 2 * PAGE if refused else HEAP + 5 * PAGE),
        (HEAP + 6 * PAGE, HEAP + 7 * PAGE)]
    assert kernel.violation_count == 0


def test_brk_keeps_a_stack_guard_gap_below_a_growsdown_mapping():
    kernel = _brk_kernel()
    stack = HEAP + 300 * PAGE
    kernel.apply({"op": "mmap", "pid": 1, "start": stack, "end": stack + PAGE, "prot": "rw",
                  "flags": ["growsdown"]})
    kernel.apply({"op": "brk", "pid": 1, "end": HEAP + 8 * PAGE})   # past the mapping
    assert kernel.counters.syscall_errors == 1
    kernel.apply({"op": "munmap", "pid": 1, "start": HEAP + 6 * PAGE, "end": HEAP + 7 * PAGE})
    kernel.apply({"op": "brk", "pid": 1, "end": stack - 256 * PAGE})    # the gap's edge
    assert kernel.counters.syscall_errors == 2 and kernel.mms[1].brk == HEAP + 2 * PAGE
    kernel.apply({"op": "brk", "pid": 1, "end": stack - 257 * PAGE})    # a page below it
    assert kernel.counters.syscall_errors == 2
    assert kernel.mms[1].brk == stack - 257 * PAGE


def test_brk_shrink_over_nothing_mapped_is_refused():
    """brk(): shrinking "Search one past newbrk ... if (!brkvma || brkvma->vm_start >=
    oldbrk) goto out": with the heap unmapped under it, the break does not move."""
    kernel = _brk_kernel()
    kernel.apply({"op": "munmap", "pid": 1, "start": HEAP, "end": HEAP + 2 * PAGE})
    kernel.apply({"op": "brk", "pid": 1, "end": HEAP + PAGE})
    assert kernel.counters.syscall_errors == 1 and kernel.mms[1].brk == HEAP + 2 * PAGE


@pytest.mark.parametrize("replace", [
    [{"op": "exec", "pid": 1}],
    [{"op": "exit", "pid": 1}, {"op": "spawn", "pid": 1}],      # a pid used again
])
def test_events_after_exec_or_pid_reuse_go_to_the_new_mm(replace):
    # Kernel._mm keeps the mm it found last: an exec or exit must not leave it pointing
    # at the old one.  By hand: the new mm has the one VMA mapped after, the old none.
    mmap = {"op": "mmap", "pid": 1, "start": 0x10000, "end": 0x12000, "prot": "rw"}
    kernel = Kernel("v6.0", check="full")
    for ev in [{"op": "spawn", "pid": 1}, mmap,
               {"op": "touch", "pid": 1, "addr": 0x10000, "write": True}]:
        kernel.apply(ev)
    old = kernel.mms[1]
    for ev in [*replace, mmap, {"op": "touch", "pid": 1, "addr": 0x11000, "write": True}]:
        kernel.apply(ev)
    new = kernel.mms[1]
    assert new is not old and old.vmas == [] and old.pages == {}
    assert [(v.start, v.end) for v in new.vmas] == [(0x10000, 0x12000)]
    assert list(new.pages) == [0x11]
    assert kernel.violation_count == 0
