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


def _spawns_by(events, programs) -> int:
    """Spawns (vfork/posix_spawn + exec) whose parent was running one of ``programs`` at the
    time, counted from the raw event stream (independently of the generator's tree)."""
    comm: dict[int, str | None] = {}
    n = 0
    for ev in events:
        if ev["op"] == "spawn":
            n += comm.get(ev.get("parent")) in programs
            comm[ev["pid"]] = ev.get("comm")
        elif ev["op"] == "fork":
            comm[ev["child"]] = comm.get(ev["pid"])
        elif ev["op"] == "exec":
            comm[ev["pid"]] = ev.get("comm")
    return n


def test_forking_make_copies_makes_mm_for_every_child_it_spawned(recorded_sh):
    """make 4.0/4.1: every child make started (recipes, $(shell), sub-makes) is a fork."""
    _, counts = recorded_sh
    _, events = generator.load_recorded("sh")
    r = traces.replay(generator.generate(Params(make_forks=True, identity=True)), check="off")
    assert r.counters["mm_forks"] == counts["mm_forks"] + _spawns_by(events, {"make"})
    assert r.counters["anon_vma_fork"] > counts["anon_vma_fork"]


def test_forking_dash_copies_the_shells_mm_for_every_external_command(recorded_sh):
    """dash before 0.5.11 (e94a964e7dd0): every command dash vforked now is a fork."""
    _, counts = recorded_sh
    _, events = generator.load_recorded("sh")
    by_dash = _spawns_by(events, generator.DASH_PROGRAMS)
    assert by_dash > 1000                       # the recipes' gcc, sed, rm, ... calls
    r = traces.replay(generator.generate(Params(shell_forks=True, identity=True)), check="off")
    assert r.counters["mm_forks"] == counts["mm_forks"] + by_dash
    assert r.counters["anon_vma_prepare"] == counts["anon_vma_prepare"]
    assert r.counters["anon_vma_fork"] > counts["anon_vma_fork"]


def test_forking_dash_is_refused_for_the_bash_build():
    with pytest.raises(RmaplabError, match="shell_forks"):
        generator.generator(Params(shell="bash", shell_forks=True))


def test_bad_parameters_are_refused():
    with pytest.raises(RmaplabError):
        list(generator.generate(Params(units=0)))


def _toy_build(compiles: int) -> list[dict]:
    """make spawning ``compiles`` recipes that run cc1 and one recipe that links."""
    events = [{"op": "spawn", "pid": 1, "comm": "make", "parent": None}]
    pid = 1
    for prog in ["cc1"] * compiles + ["ld"]:
        pid += 1
        events += [{"op": "spawn", "pid": pid, "comm": "sh", "parent": 1},
                   {"op": "spawn", "pid": pid + 1, "comm": prog, "parent": pid},
                   {"op": "exit", "pid": pid + 1}, {"op": "exit", "pid": pid}]
        pid += 1
    return [*events, {"op": "exit", "pid": 1}]


def test_units_between_counts_recurring_recipes_only():
    small, large = generator.parse_tree(_toy_build(6)), generator.parse_tree(_toy_build(15))
    assert generator.recurring_recipes(small) == 6          # the one link is not recurring
    assert generator.units_between(small, large) == 2.5


def test_against_recorded_reports_mean_and_worst_seed_error_in_percent():
    import pandas as pd

    gen = pd.DataFrame({"mm_forks": [90, 110, 100], "vma_alloc": [200, 200, 200]})
    table = generator.against_recorded(gen, {"mm_forks": 80, "vma_alloc": 250},
                                       counters=("mm_forks", "vma_alloc")).set_index("counter")
    assert table.loc["mm_forks", "generated"] == 100
    assert table.loc["mm_forks", "error %"] == 25.0                  # (100 - 80) / 80
    assert table.loc["mm_forks", "worst seed %"] == 37.5             # (110 - 80) / 80
    assert table.loc["vma_alloc", "error %"] == -20.0


def test_creations_by_program_attributes_each_start_to_its_creators_program():
    events = [{"op": "spawn", "pid": 1, "comm": "make", "parent": None},
              {"op": "spawn", "pid": 2, "comm": "sh", "parent": 1},
              {"op": "fork", "pid": 2, "child": 3},            # a subshell of sh
              {"op": "spawn", "pid": 4, "comm": "sed", "parent": 3},
              {"op": "exec", "pid": 3, "comm": "cat"},
              {"op": "fork", "pid": 3, "child": 5}]            # now cat's
    assert generator.creations_by_program(events) == {
        ("spawn", "make"): 1, ("fork", "sh"): 1, ("spawn", "sh"): 1, ("fork", "cat"): 1}
