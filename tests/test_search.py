"""The invariant search finds the CVE-2022-42703 class under v5.4 by itself."""

from __future__ import annotations

from rmaplab import traces
from rmaplab.model.search import find_violation, renumber, replay_events, shrink
from rmaplab.paths import data_dir


def test_search_breaks_v54_and_shrinks_the_sequence():
    found = find_violation("v5.4", budget=20_000)
    assert found is not None
    assert found.violation["invariant"] == "same-anon_vma-same-chain"
    # shrunk: every event is needed (dropping any one loses the violation or the trace)
    kernel = replay_events(found.events, "v5.4")
    assert kernel is not None and kernel.violations
    for i in range(1, len(found.events)):
        shorter = found.events[:i] + found.events[i + 1:]
        k = replay_events(shorter, "v5.4", "incremental")
        assert k is None or not any(v.invariant == "same-anon_vma-same-chain"
                                    for v in k.violations)
    # the live kernel's rule handles the same sequence cleanly
    assert replay_events(found.events, "v6.0").violations == []
    assert replay_events(found.events, "no-reuse").violations == []


def test_committed_search_traces_still_break_what_they_broke():
    folder = data_dir() / "traces"
    same = [ev for _, ev in traces.load(folder / "search-v5.4-same-chain.jsonl")]
    uaf = [ev for _, ev in traces.load(folder / "search-v5.4-uaf.jsonl")]
    assert any(v.invariant == "same-anon_vma-same-chain"
               for v in replay_events(same, "v5.4").violations)
    assert any(v.invariant == "page-mapping-freed"
               for v in replay_events(uaf, "v5.4").violations)
    for policy in ("v6.0", "no-reuse"):
        assert replay_events(same, policy).violations == []
        assert replay_events(uaf, policy).violations == []


def test_shrink_keeps_a_minimal_violating_prefix():
    same = [ev for _, ev in traces.load(data_dir() / "traces" / "search-v5.4-same-chain.jsonl")]
    assert shrink(same, "v5.4", "same-anon_vma-same-chain") == renumber(same)
