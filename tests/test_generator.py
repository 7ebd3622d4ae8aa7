"""The synthetic build generator against the recorded builds it is fitted to."""

from __future__ import annotations

import pytest

from rmaplab import generator, traces
from rmaplab.errors import RmaplabError
from rmaplab.generator import Params

KEYS = ("anon_vma_fork", "anon_vma_prepare", "avc_alloc", "vma_alloc", "mm_forks")


@pytest.fixture(scope="module")
def recorded_sh():
    root, events = generator.load_recorded("sh")
    counts = traces.replay(list(enumerate(events, 1)), check="off").counters
    return root, counts


def test_identity_generation_reproduces_the_recorded_build_exactly(recorded_sh):
    """Rebuilding the recorded tree (no resampling, make children interleaved -j2) changes
    only the order of independent processes: every count is the recorded one."""
    _, counts = recorded_sh
    r = traces.replay(generator.generate(Params(identity=True)), check="off")
    assert {k: r.counters[k] for k in KEYS} == {k: counts[k] for k in KEYS}


def test_resampled_build_is_within_two_percent_of_the_recorded_one(recorded_sh):
    _, counts = recorded_sh
    r = traces.replay(generator.generate(Params(seed=7)), check="off")
    for k in KEYS:
        assert abs(r.counters[k] - counts[k]) <= 0.02 * counts[k], k


def _programs(events):
    from collections import Counter

    return Counter(e.get("comm") for e in events if e["op"] in ("spawn", "exec"))


def test_more_units_scale_recurring_recipes_and_keep_one_off_ones(recorded_sh):
    """Twice the units: twice the compilations (cc1), but the one-off script
    (mkcapflags.sh, the build's one recipe running wc) still runs once."""
    root, _ = recorded_sh
    _, events = generator.load_recorded("sh")
    recorded = _programs(events)
    generated = _programs(ev for _, ev in generator.generate(Params(units=2.0, seed=1)))
    assert 1.8 * recorded["cc1"] <= generated["cc1"] <= 2.2 * recorded["cc1"]
    assert generated["wc"] == recorded["wc"]


def test_forking_make_copies_makes_mm_for_every_recipe(recorded_sh):
    root, counts = recorded_sh
    spawned = sum(1 for _ in generator.recipes(root))
    r = traces.replay(generator.generate(Params(make_forks=True, identity=True)), check="off")
    # every child make spawned (recipes, mkdir, sub-makes) is now a fork of make
    assert r.counters["mm_forks"] > counts["mm_forks"] + spawned
    assert r.counters["anon_vma_fork"] > counts["anon_vma_fork"]


def test_bad_parameters_are_refused():
    with pytest.raises(RmaplabError):
        list(generator.generate(Params(units=0)))
