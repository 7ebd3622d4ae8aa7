"""Property-based tests over random multi-process event sequences (Hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmaplab import traces
from rmaplab.model import POLICIES, Kernel

BASE = 0x20000000
PAGE = 4096
REGION = 8          # pages in the shared playground
HEAP = 0x30000000

idx = st.integers(0, 5)
page = st.integers(0, REGION - 1)
npages = st.integers(1, 4)
prot = st.sampled_from(["", "r", "rw", "rx", "rwx"])
OPS = st.one_of(
    st.tuples(st.just("mmap"), idx, page, npages, prot, st.booleans()),
    st.tuples(st.just("munmap"), idx, page, npages),
    st.tuples(st.just("mprotect"), idx, page, npages, prot),
    st.tuples(st.just("madvise"), idx, page, npages,
              st.sampled_from(["dontfork", "dofork", "wipeonfork", "keeponfork", "dontneed"])),
    st.tuples(st.just("touch"), idx, page, st.booleans()),
    st.tuples(st.just("touch"), idx, page, st.just(True)),
    st.tuples(st.just("fork"), idx),
    st.tuples(st.just("exit"), idx),
    st.tuples(st.just("exec"), idx),
    st.tuples(st.just("brk"), idx, st.integers(0, 6)),
)


def to_events(program):
    """Interpret ops against the live processes (index modulo their number)."""
    live, next_pid = [1], 2
    # Two adjacent anon_vma-compatible VMAs (they differ only in PROT_EXEC), so that
    # neighbour reuse at the first fault and merges on mprotect are within easy reach.
    half = BASE + REGION // 2 * PAGE
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": BASE, "end": half, "prot": "rw"},
              {"op": "mmap", "pid": 1, "start": half, "end": BASE + REGION * PAGE, "prot": "rwx"}]
    for op in program:
        kind, pid = op[0], live[op[1] % len(live)]
        if kind == "fork":
            if len(live) >= 6:
                continue
            events.append({"op": "fork", "pid": pid, "child": next_pid})
            live.append(next_pid)
            next_pid += 1
        elif kind == "exit":
            if len(live) > 1:
                live.remove(pid)
                events.append({"op": "exit", "pid": pid})
        elif kind == "exec":
            events.append({"op": "exec", "pid": pid})
        elif kind == "brk":
            events.append({"op": "brk", "pid": pid, "end": HEAP + op[2] * PAGE, "start": HEAP})
        elif kind == "touch":
            events.append({"op": "touch", "pid": pid, "addr": BASE + op[2] * PAGE + 8,
                           "write": op[3]})
        else:
            start = BASE + op[2] * PAGE
            end = min(start + op[3] * PAGE, BASE + REGION * PAGE)
            ev = {"op": kind, "pid": pid, "start": start, "end": end}
            if kind == "mmap":
                ev["prot"], ev["shared"] = op[4], op[5]
            elif kind == "mprotect":
                ev["prot"] = op[4]
            elif kind == "madvise":
                ev["advice"] = op[4]
            events.append(ev)
    return [(i, traces.validate(e, "<random>", i)) for i, e in enumerate(events, 1)]


def run(program, policy):
    kernel = Kernel(policy, check="full")
    for _, ev in to_events(program):
        kernel.apply(ev)
    return kernel


# Derandomized so a run is reproducible; 3000 examples kill the planted bugs below.
PROPERTY = settings(max_examples=3000, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_no_violation(program, policy):
    kernel = run(program, policy)
    assert kernel.violations == [], kernel.violations[0]


@PROPERTY
@given(st.lists(OPS, max_size=60))
def test_v60_never_violates_an_invariant(program):
    """Under the live kernel's rule (2555283eb40d) no event sequence breaks any invariant."""
    assert_no_violation(program, "v6.0")


@PROPERTY
@given(st.lists(OPS, max_size=60))
def test_no_reuse_never_violates_an_invariant(program):
    """Without reuse at fork (5beb49305251) no event sequence breaks any invariant."""
    assert_no_violation(program, "no-reuse")


@PROPERTY
@given(st.lists(OPS, max_size=60), st.sampled_from(["v6.0+4e4a9eb", "v6.0+wei-intended"]))
def test_patch_rules_on_the_v60_counters_never_violate_an_invariant(program, policy):
    """Either form of Wei Yang's patch on 2555283eb40d's counters keeps every invariant
    (the violations of v5.5 and wei-intended need the degree rule's double reuse)."""
    assert_no_violation(program, policy)


def _dup_anon_vma_without_clone(self, dst, src):
    if src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        dst.anon_vma.num_active_vmas += 1


def _reusable_anon_vma_without_singular_check(self, old, a, b):
    return old.anon_vma if self.anon_vma_compatible(a, b) else None


def _unlink_forgets_num_active_vmas(self, vma):
    own = vma.anon_vma
    if own is not None:
        own.num_active_vmas += 1   # undone below: net effect, the decrement is lost
    ORIGINAL_UNLINK(self, vma)


ORIGINAL_UNLINK = Kernel.unlink_anon_vmas


@pytest.mark.interpreted_only
@pytest.mark.parametrize("name, where, attr, bug", [
    ("merge clones no chain", "rmaplab.model.vma.VmaMixin", "dup_anon_vma",
     _dup_anon_vma_without_clone),
    ("prepare reuses a forked neighbour", "rmaplab.model.rmap.RmapMixin", "reusable_anon_vma",
     _reusable_anon_vma_without_singular_check),
    ("unlink forgets num_active_vmas", "rmaplab.model.rmap.RmapMixin", "unlink_anon_vmas",
     _unlink_forgets_num_active_vmas),
])
def test_the_property_catches_planted_bugs(monkeypatch, name, where, attr, bug):
    """The v6.0 property can fail: with a bug planted in the model it finds a violation."""
    import importlib

    module, cls = where.rsplit(".", 1)
    monkeypatch.setattr(getattr(importlib.import_module(module), cls), attr, bug)
    with pytest.raises(AssertionError):
        PROPERTY(given(st.lists(OPS, max_size=60))(
            lambda program: assert_no_violation(program, "v6.0")))()


@PROPERTY
@given(st.lists(OPS, max_size=60), st.sampled_from(list(POLICIES)))
def test_everything_is_freed_when_every_process_has_exited(program, policy):
    """Whatever happened, exiting every process frees every anon_vma, AVC and VMA."""
    kernel = run(program, policy)
    for pid in list(kernel.mms):
        kernel.exit(pid)
    c = kernel.counters
    assert (c.live_anon_vma, c.live_avc, c.live_vma) == (0, 0, 0)
    assert c.anon_vma_alloc == c.anon_vma_free and c.avc_alloc == c.avc_free


@PROPERTY
@given(st.lists(OPS, max_size=40))
def test_allocation_counts_add_up_by_call_site(program):
    kernel = run(program, "v6.0")
    c = kernel.counters
    assert c.anon_vma_alloc == c.anon_vma_fork + c.anon_vma_prepare
    assert c.avc_alloc == c.avc_fork + c.avc_clone + c.avc_prepare
    assert c.avc_clone == c.avc_clone_fork + c.avc_clone_split + c.avc_clone_merge \
        + c.avc_clone_copy_vma
    # anon_vma_fork allocates one anon_vma and one AVC together
    assert c.anon_vma_fork == c.avc_fork


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=60), st.sampled_from(["v5.4", "v5.5", "v6.0"]))
def test_reuse_test_is_never_reached_with_a_null_src_anon_vma(program, policy):
    """47b390d23bf8's ``src->anon_vma`` term never decides: anon_vma_clone() reaches its
    reuse test with dst->anon_vma == NULL only from anon_vma_fork(), and that returns
    early when pvma->anon_vma is NULL (tests/test_model.py builds the one state where
    the term would decide, and no event sequence makes it)."""
    assert run(program, policy).counters.reuse_test_src_null == 0
