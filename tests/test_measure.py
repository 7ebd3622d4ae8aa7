"""The perf harness: clear errors without perf, exact agreement with the model on the live kernel."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import DATA
from rmaplab.errors import RmaplabError
from rmaplab.measure import micro, perf, run


def test_missing_perf_says_what_to_install(monkeypatch):
    monkeypatch.setattr(perf.shutil, "which", lambda name: None)
    with pytest.raises(RmaplabError, match="perf not found.*linux-perf"):
        perf.check()


def test_unmounted_tracefs_says_how_to_mount_it(monkeypatch):
    monkeypatch.setattr(perf.shutil, "which", lambda name: "/usr/bin/perf")
    monkeypatch.setattr(perf, "_tracefs_present", lambda: False)
    with pytest.raises(RmaplabError, match="mount -t tracefs"):
        perf.check()


def test_permission_problems_are_diagnosed():
    assert "perf_event_paranoid" in perf.diagnose("Error: No permission to enable kmem event")


def test_parse_reads_a_real_perf_stat_csv():
    path = DATA / "perf" / "stat-avwork-split-4-3.csv"
    values = perf.parse(path.read_text(), str(path))
    assert values["anon_vma_fork"] == values["avc_fork"] == 42
    assert values["mm_forks"] == 3 and values["execs"] == 1
    assert values["real"] > 0


def test_parse_names_the_line_of_a_surprising_counter(tmp_path):
    text = (DATA / "perf" / "stat-avwork-split-4-3.csv").read_text().splitlines()
    third = [i for i, line in enumerate(text) if "kmem:kmem_cache_alloc" in line][2]
    text[third] = text[third].replace("kmem:kmem_cache_alloc", "sched:sched_switch")
    with pytest.raises(RmaplabError, match=rf"bad.csv:{third + 1}: counter avc_fork is "
                                           r"'sched:sched_switch'"):
        perf.parse("\n".join(text), "bad.csv")


def test_consistency_flags_counts_the_kernel_cannot_produce():
    good = {"anon_vma_fork": 42, "avc_fork": 42, "mm_forks": 3, "forks": 3}
    assert run.consistency(good) == []
    assert run.consistency({**good, "anon_vma_fork": 242})


@pytest.mark.perf
def test_micro_workloads_match_the_v60_model_exactly_by_call_site(live_kernel):
    """Live (K,N)-(0,N) deltas on this kernel equal the model's, for every mode and counter."""
    k, n = 8, 4
    runs, _ = run.campaign(micro.conditions(k, n), runs=2, record=False, log=lambda s: None)
    import pandas as pd

    table = micro.compare(pd.DataFrame([r.row() for r in runs]), k, n)
    mismatches = table[~table["match"]]
    assert mismatches.empty, mismatches.to_string()
    assert (table["repeat_spread"] == 0).all()


@pytest.mark.perf
def test_measure_json_follows_the_contract(live_kernel):
    out = subprocess.run([sys.executable, "-m", "rmaplab", "measure", "--no-record", "--json",
                          "--", "sh", "-c", "x=$(true); y=$(true)"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
                "avc_clone", "avc_prepare", "vma_alloc", "forks", "mm_forks", "execs", "real",
                "user", "sys", "host"):
        assert key in result
    assert result["mm_forks"] == 2
    assert result["host"]["kernel_release"]


def test_measure_without_a_command_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "rmaplab", "measure", "--no-record"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no command to measure" in out.stderr
