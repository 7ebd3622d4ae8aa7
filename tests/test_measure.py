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


def _check_overhead_against_scipy(runs, metrics=("real", "user")) -> int:
    """overhead(runs) against scipy, computed here: the change of means, Welch's p (scipy's
    ttest_ind), and each finite CI end r at which scipy's Welch test of perf against
    r * plain has p = 0.05 (Fieller-Welch; an unbounded end is NaN).  Returns the number
    of finite CI ends checked."""
    import numpy as np
    from scipy import stats

    from rmaplab.measure import kbuild

    table = kbuild.overhead(runs).set_index(["shell", "metric"])
    good = runs[~runs["warmup"] & ~runs["failed"]]
    finite = 0
    for shell in ("sh", "bash"):
        for metric in metrics:
            a = good[good["label"] == f"{shell}-plain"][metric].to_numpy()
            b = good[good["label"] == shell][metric].to_numpy()
            row = table.loc[(shell, metric)]
            assert row["overhead_pct"] == pytest.approx(100 * (b.mean() / a.mean() - 1))
            assert row["p_welch"] == pytest.approx(
                stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9)
            for end in ("ci_low", "ci_high"):
                if np.isnan(row[end]):
                    continue
                finite += 1
                r = 1 + row[end] / 100
                assert stats.ttest_ind(b, r * a, equal_var=False).pvalue == pytest.approx(
                    0.05, abs=1e-6)
            assert row["n_plain"] == len(a) and row["n_perf"] == len(b)
    return finite


def test_kbuild_overhead_of_the_recorded_fixture_matches_scipy():
    import pandas as pd

    _check_overhead_against_scipy(pd.read_csv(KBUILD_TINY / "runs.csv"))


def test_kbuild_overhead_with_enough_runs_has_a_bounded_ci_that_matches_scipy():
    """Eight runs per condition with a known 5% perf overhead on real time: both CI ends
    finite, and they cover the 5%."""
    import numpy as np
    import pandas as pd

    from rmaplab.measure import kbuild

    rng = np.random.default_rng(7)
    rows = []
    for shell, base in (("sh", 60.0), ("bash", 70.0)):
        for label, factor in ((f"{shell}-plain", 1.0), (shell, 1.05)):
            for i in range(8):
                rows.append({"order": len(rows) + 1, "label": label, "warmup": False,
                             "failed": False,
                             "instrumented": not label.endswith("-plain"), "run": i + 1,
                             "real": base * factor * (1 + 0.01 * rng.standard_normal()),
                             "user": 50 * (1 + 0.01 * rng.standard_normal()),
                             "sys": 9 * factor * (1 + 0.02 * rng.standard_normal())})
    runs = pd.DataFrame(rows)
    assert _check_overhead_against_scipy(runs, ("real", "user", "sys")) == 12
    table = kbuild.overhead(runs).set_index(["shell", "metric"])
    for shell in ("sh", "bash"):
        assert table.loc[(shell, "real"), "ci_low"] < 5 < table.loc[(shell, "real"), "ci_high"]


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
    # only the runs finished before the failure are kept, as an -incomplete record
    assert not out.exists() or all("-incomplete" in d.name for d in out.iterdir())
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


def test_newest_campaign_skips_campaigns_too_short_for_the_splits():
    """A/A needs 2 x 3 runs of one condition: a campaign with fewer of some condition is
    passed over for an older one that has them (counted here from runs.csv directly)."""
    import pandas as pd

    from rmaplab.measure import data, kbuild

    def fewest(d):
        r = pd.read_csv(d / "runs.csv")
        r = r[~r.warmup.astype(bool) & ~r.failed.astype(bool)]
        return int(r.groupby("label").size().min())

    dirs = data.campaigns("kbuild")
    for need in (1, 6):
        want = [d for d in dirs if fewest(d) >= need]
        if not want:
            continue
        assert kbuild.newest_campaign(need) == want[-1]
    with pytest.raises(RmaplabError):
        kbuild.newest_campaign(10_000)


def test_every_kbuild_trace_label_survives_into_its_run_name():
    # A long label (config fragments and a shell) cut short in the directory name would
    # not be found again by its suffix: the larger build's trace once was.
    from rmaplab.measure import kbuild, record

    for config in ("tinyconfig", "tinyconfig kvm_guest.config", "defconfig kvm_guest.config"):
        label = kbuild.trace_label(config, "dash2019")
        assert record.run_name(label).endswith("-" + label)
