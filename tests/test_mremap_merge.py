"""Which 6.18.y mremap() merge behaviour the host kernel has (61f67c230a5e, 3b617fd3d317).

The reference is the live kernel: mremap_merge.c under perf (the live test, which CI
runs with RMAPLAB_REQUIRE_PERF=1) and the probe recorded on this machine under
data/raw/mremap/ (checked everywhere, against the manifest).
"""

from __future__ import annotations

import platform

import pandas as pd
import pytest

from rmaplab.measure import data, mremap_merge


def test_the_probe_tells_the_three_merge_rules_apart():
    """Each rule predicts different deltas or VMAs: exactly one can match a kernel."""
    predictions = set()
    for rule in mremap_merge.RULES:
        outcome = []
        for mode in mremap_merge.MODES:
            adjacent, vmas = mremap_merge.model(mode, "adjacent", rule)
            apart, _ = mremap_merge.model(mode, "apart", rule)
            outcome.append((tuple(vmas),
                            tuple(adjacent[c] - apart[c] for c in mremap_merge.COMPARED)))
        predictions.add(tuple(outcome))
    assert len(predictions) == len(mremap_merge.RULES)


def test_the_probe_never_frees_an_anon_vma_a_page_points_to():
    """The half move keeps the source's chain: safe to run on a kernel without the fix."""
    for rule in mremap_merge.RULES:
        for mode in mremap_merge.MODES:
            for target in mremap_merge.TARGETS:
                mremap_merge.model(mode, target, rule)   # raises on page-mapping-freed


def test_the_printed_vmas_are_read_as_pages_and_prot():
    out = b"vma 0 1 ---p\nvma 1 7 rw-p\nnoise\n"
    assert mremap_merge.parse_vmas(out) == [(0, 1, ""), (1, 7, "rw")]


@pytest.mark.parametrize("release, rule", [("6.18.44-fc-v1045", "uncowed"),
                                           ("6.18.7", "uncowed-6.16"), ("6.16.0", "uncowed-6.16"),
                                           ("6.19.0-rc1", "uncowed"), ("6.12.118", "singular")])
def test_expected_rule_follows_the_release(release, rule):
    assert mremap_merge.expected_rule(release) == rule


def test_recorded_host_kernel_has_both_fixes():
    """The probe recorded on this machine (6.18.44) matches the default rule only."""
    directory = data.latest("mremap")
    _, meta = data.load(directory)
    table, verdict = mremap_merge.load(directory)
    assert verdict["rule"] == "uncowed" == mremap_merge.expected_rule(
        meta["host"]["kernel_release"])
    assert verdict["fixes"] == {"61f67c230a5e": True, "3b617fd3d317": True}
    assert verdict["matches"] == {"uncowed": True, "uncowed-6.16": False, "singular": False}
    assert isinstance(table, pd.DataFrame) and len(table) == 16


@pytest.mark.perf
def test_live_kernel_follows_the_rule_of_its_release(live_kernel):
    table, verdict, _ = mremap_merge.probe(runs=1, record=False, log=lambda s: None)
    assert verdict["rule"] is not None, table.to_string()
    assert verdict["rule"] == mremap_merge.expected_rule(platform.release()), table.to_string()
