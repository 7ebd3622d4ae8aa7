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


KBUILD_TINY = DATA / "kbuild" / "tiny"


def test_kbuild_overhead_is_a_welch_ratio_of_plain_and_perf_runs():
    """overhead() against scipy's Welch t on log times, computed here from runs.csv."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    from rmaplab.measure import kbuild

    runs = pd.read_csv(KBUILD_TINY / "runs.csv")
    table = kbuild.overhead(runs).set_index(["shell", "metric"])
    good = runs[~runs["warmup"] & ~runs["failed"]]
    for shell in ("sh", "bash"):
        a = good[good["label"] == f"{shell}-plain"]["real"].to_numpy()
        b = good[good["label"] == shell]["real"].to_numpy()
        row = table.loc[(shell, "real")]
        assert row["overhead_pct"] == pytest.approx(100 * (b.mean() / a.mean() - 1))
        p = stats.ttest_ind(np.log(b), np.log(a), equal_var=False).pvalue
        assert row["p_welch"] >= p - 1e-12      # Holm-adjusted: never below the raw p
        assert row["n_plain"] == len(a) and row["n_perf"] == len(b)


def test_sys_seconds_prefers_uninstrumented_runs_and_says_which_it_used():
    import pandas as pd

    from rmaplab.measure import kbuild

    runs = pd.read_csv(KBUILD_TINY / "runs.csv")
    got = kbuild.sys_seconds("bash", runs, "tiny")
    good = runs[~runs["warmup"] & ~runs["failed"]]
    assert got["sys_s"] == pytest.approx(good[good["label"] == "bash-plain"]["sys"].median())
    assert got["instrumented"] is False and got["n"] == 2
    old = runs[runs["instrumented"]].drop(columns="instrumented")   # a campaign before plain runs
    got = kbuild.sys_seconds("bash", old, "old")
    assert got["instrumented"] is True
    assert got["sys_s"] == pytest.approx(good[good["label"] == "bash"]["sys"].median())


TINY_MAKEFILE = """\
OBJS := $(patsubst %,o%.txt,1 2 3 4)
all: $(OBJS)
o%.txt:
\t@x=$$(echo $*); echo $$x > $@
clean:
\t@rm -f o*.txt
"""


@pytest.mark.perf
def test_kbuild_campaign_interleaves_plain_runs_and_resumes_after_a_crash(live_kernel, tmp_path,
                                                                          monkeypatch):
    """A tiny tree stands in for the kernel: the same conditions, a failure half-way
    (the 5th `make clean` fails), and a rerun that finishes without redoing runs."""
    import pandas as pd

    from rmaplab.measure import kbuild

    monkeypatch.setenv("RMAPLAB_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text(TINY_MAKEFILE)
    flaky = tmp_path / "cleans"
    conds = kbuild.conditions(tree, jobs=2)
    for c in conds:   # count the cleans; the 5th fails, later ones succeed
        c.before = ["sh", "-c", f'n=$(cat {flaky} 2>/dev/null || echo 0); '
                                f'echo $((n+1)) > {flaky}; [ "$n" -ne 4 ]']
    out = tmp_path / "raw"
    with pytest.raises(RmaplabError, match="preparation"):
        run.campaign(conds, runs=2, seed=1, label="tiny", out_root=out, log=lambda s: None)
    assert not out.exists() or not list(out.iterdir())       # nothing published yet
    runs, where = run.campaign(conds, runs=2, seed=1, label="tiny", out_root=out,
                               log=lambda s: None)
    table = pd.read_csv(where / "runs.csv")
    assert len(table) == 8 and list(table["order"]) == list(range(1, 9))
    assert int(flaky.read_text()) == 9        # 4 before the failure + the failed one + 4 more
    plain = table[~table["instrumented"]]
    assert set(plain["label"]) == {"sh-plain", "bash-plain"}
    assert plain["anon_vma_fork"].isna().all() and (plain["real"] > 0).all()
    perf_runs = table[table["instrumented"]]
    assert perf_runs["mm_forks"].notna().all()
    assert json.loads((where / "metadata.json").read_text())["resumed"] is True
