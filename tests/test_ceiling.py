"""The in-vivo ceiling: perf script parsing, the three reducers, the analysis, and a live run.

Fixtures (see tests/data/perf/README.md and tests/data/ceiling/README.md): ``perf/script-ceiling-trace.txt.gz`` is real perf
script output of the trace pass around ``sh -c 'x=$(/bin/true); y=$(/bin/true)'``;
``ceiling/tiny`` is a whole `rmaplab ceiling` campaign on a shell loop.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from rmaplab.errors import RmaplabError
from rmaplab.measure import ceiling

TINY = DATA / "ceiling" / "tiny"


def lines(text: str) -> list[str]:
    return [ln + "\n" for ln in text.strip("\n").split("\n")]


def test_records_read_headers_frames_and_sideband_records():
    recs = list(ceiling.records(lines(
        "  123  10.000000100: syscalls:sys_enter_clone: clone_flags: 0x1200011\n"
        "  123  10.000000200:     250000         cpu-clock: \n"
        "\tffffffff8164c0ca kmem_cache_free\n"
        "\tffffffff8162a2f1 unlink_anon_vmas\n"
        "\n"
        "sh  77 [001]  10.000000300: PERF_RECORD_FORK(124:124):(123:123)\n"
        "   -1  10.000000400:                   sched:sched_switch: prev_comm=x prev_pid=5 "
        "prev_prio=120 prev_state=S ==> next_comm=y next_pid=6 next_prio=120\n")))
    assert [(r.tid, r.t, r.event) for r in recs] == [
        (123, 10_000_000_100, "syscalls:sys_enter_clone"), (123, 10_000_000_200, "cpu-clock"),
        (-1, 10_000_000_300, "PERF_RECORD_FORK"), (-1, 10_000_000_400, "sched:sched_switch")]
    assert recs[1].period == 250000
    assert recs[1].frames == ["kmem_cache_free", "unlink_anon_vmas"]


def test_unparseable_perf_script_line_names_its_line():
    from rmaplab.errors import RmaplabError

    with pytest.raises(RmaplabError, match=r"x.txt:2: unexpected perf script line"):
        list(ceiling.records(["  1  1.000000000: a:b: c\n", "garbage\n"], "x.txt"))


def _rec(tid: int, t: int, event: str, trace: str = "") -> ceiling.Record:
    return ceiling.Record(tid, t, event, trace)


def switch(t: int, prev: int, nxt: int) -> ceiling.Record:
    return _rec(-1, t, "sched:sched_switch", f"prev_comm=a prev_pid={prev} prev_prio=120 "
                                              f"prev_state=S ==> next_comm=b next_pid={nxt}")


def test_brackets_are_charged_only_while_their_thread_is_on_a_cpu():
    """fork: 100..450 with the thread off the CPU 150..400 -> 100 ns on-CPU, 350 wall."""
    r = ceiling.TraceReducer(root=10)
    for rec in [
        switch(50, 0, 10),
        _rec(10, 100, "syscalls:sys_enter_clone"),
        _rec(-1, 120, "PERF_RECORD_FORK", "(11:11):(10:10)"),
        _rec(10, 120, "task:task_newtask", "pid=11 comm=sh clone_flags=1200000"),
        switch(150, 10, 0), switch(400, 0, 10),
        _rec(10, 450, "syscalls:sys_exit_clone", "0xb"),
        # a vfork (CLONE_VM) is not an mm copy: no bracket
        _rec(10, 500, "syscalls:sys_enter_clone"),
        _rec(-1, 510, "PERF_RECORD_FORK", "(12:12):(10:10)"),
        _rec(10, 510, "task:task_newtask", "pid=12 comm=sh clone_flags=4100"),
        _rec(10, 520, "syscalls:sys_exit_clone", "0xc"),
        # exec of a vfork child: no teardown, dropped at sys_exit_execve
        _rec(12, 600, "sched:sched_prepare_exec"), _rec(12, 650, "syscalls:sys_exit_execve"),
        # exec that tears down a copied mm, then the exit
        _rec(11, 700, "sched:sched_prepare_exec"), _rec(11, 760, "mmap:exit_mmap"),
        _rec(11, 800, "sched:sched_process_exit"), _rec(11, 870, "mmap:exit_mmap"),
        # a read section with an allocation from __anon_vma_prepare, one without
        _rec(10, 900, "mmap_lock:mmap_lock_acquire_returned", "mm=0xa write=false"),
        _rec(10, 905, "kmem:kmem_cache_alloc", "call_site=__anon_vma_prepare+0x1 ptr=0x1"),
        _rec(10, 930, "mmap_lock:mmap_lock_released", "mm=0xa write=false"),
        _rec(10, 950, "mmap_lock:mmap_lock_acquire_returned", "mm=0xa write=false"),
        _rec(10, 960, "mmap_lock:mmap_lock_released", "mm=0xa write=false"),
        # a thread outside the tree is ignored
        _rec(99, 990, "syscalls:sys_enter_clone"),
    ]:
        r.feed(rec)
    table, stats = r.finish()
    got = {row.kind: (row.oncpu_ns, row.wall_ns, row.allocs) for row in table.itertuples()}
    assert got == {"fork": (100, 350, 0), "exec": (60, 60, 0), "exit": (70, 70, 0),
                   "prepare": (30, 30, 1)}
    assert stats["clone_sharing_mm"] == 1 and stats["exec_without_teardown"] == 1
    assert stats["threads"] == 3


def test_recorded_trace_of_two_subshells_has_their_forks_execs_and_exits():
    """dash forks once per $(...): 2 mm copies (the count `rmaplab measure` finds for this
    command, tests/test_measure.py); each child execs /bin/true (2 teardowns at exec) and
    true and sh exit (3 teardowns at exit)."""
    meta = json.loads((DATA / "perf" / "script-ceiling-trace.json").read_text())
    with gzip.open(DATA / "perf" / "script-ceiling-trace.txt.gz", "rt") as f:
        files, stats = ceiling.reduce("trace", f, meta["root"])
    table = pd.read_csv(io.BytesIO(gzip.decompress(files["brackets.csv.gz"])))
    assert table["kind"].value_counts().to_dict() == {"prepare": 23, "exit": 3, "fork": 2,
                                                      "exec": 2}
    assert stats["newtask_in_tree"] == stats["fork_records_in_tree"] == 2
    assert (table["oncpu_ns"] <= table["wall_ns"]).all() and (table["oncpu_ns"] > 0).all()
    # every allocation from __anon_vma_prepare was inside a read section (2 per prepare)
    assert table["allocs"].sum() == stats["prepare_allocs"] == 46


def test_sample_reducer_folds_kernel_chains_root_first_by_thread_group():
    r = ceiling.SampleReducer(root=10)
    for rec in [ceiling.Record(10, 1, "cpu-clock", "", 250000, ["kmem_cache_free",
                                                                "unlink_anon_vmas", "exit_mmap"]),
                ceiling.Record(10, 2, "cpu-clock", "", 250000, []),
                ceiling.Record(0, 3, "cpu-clock", "", 250000, ["default_idle"]),
                ceiling.Record(77, 4, "cpu-clock", "", 250000, ["x"])]:
        r.feed(rec)
    text, stats = r.finish()
    assert text.splitlines() == ["build;[user] 1", "build;exit_mmap;unlink_anon_vmas;"
                                 "kmem_cache_free 1", "idle;default_idle 1", "other;x 1"]
    assert stats["period_ns"] == 250000


def test_lock_waits_on_the_rwsem_of_a_recorded_anon_vma_are_anon_vma_root_locks():
    r = ceiling.LockReducer(root=10)
    for rec in [
        _rec(10, 1, "kmem:kmem_cache_alloc", "call_site=anon_vma_fork+0x6d ptr=0xff00 "
                                            "name=anon_vma"),
        ceiling.Record(10, 10, "lock:contention_begin", "0xff08 (flags=WRITE)", 0,
                       ["rwsem_down_write_slowpath", "down_write", "unlink_anon_vmas"]),
        _rec(10, 35, "lock:contention_end", "0xff08 (ret=0)"),
        ceiling.Record(10, 40, "lock:contention_begin", "0xaa00 (flags=SPIN)", 0, ["f"]),
        _rec(10, 45, "lock:contention_end", "0xaa00 (ret=0)"),
    ]:
        r.feed(rec)
    text, _ = r.finish()
    assert text.splitlines() == [
        "build;anon_vma;WRITE;unlink_anon_vmas;down_write;rwsem_down_write_slowpath 1 25",
        "build;other;SPIN;f 1 5"]


def test_classify_attributes_to_the_outermost_anon_vma_function_and_what_runs_under_it():
    c = ceiling.classify("entry;copy_process;dup_mmap;anon_vma_fork;anon_vma_clone;"
                         "kmem_cache_alloc_noprof;_raw_spin_lock")
    assert (c["anon"], c["sub"], c["path"]) == ("anon_vma_fork", "slab", "dup_mmap")
    c = ceiling.classify("entry;exit_mmap;free_pgtables;unlink_anon_vmas;down_write")
    assert (c["anon"], c["sub"], c["path"]) == ("unlink_anon_vmas", "lock", "exit_mmap")
    assert ceiling.classify("[user]")["mode"] == "user"
    assert ceiling.classify("entry;do_wp_page")["anon"] == ""


def test_ceiling_table_divides_bracket_time_by_uninstrumented_sys():
    runs = pd.read_csv(TINY / "runs.csv")
    table = ceiling.ceiling_table(TINY, "cmd", 2).set_index(["source", "component"])
    plain = runs[(runs["kind"] == "plain") & (runs["jobs"] == 2)]["sys"].mean()
    brackets = ceiling.bracket_summary(TINY)
    brackets = brackets[brackets["jobs"] == 2]
    per_run = brackets.groupby("order")["oncpu_s"].sum()
    row = table.loc[("brackets (on-CPU)", "all four")]
    assert row["denominator_sys_s"] == pytest.approx(plain)
    assert row["seconds"] == pytest.approx(per_run.mean())
    assert row["pct_of_sys"] == pytest.approx(100 * per_run.mean() / plain)
    fork = table.loc[("brackets (on-CPU)", "fork")]
    assert fork["n_runs"] == 2 and fork["ci_low_s"] <= fork["seconds"] <= fork["ci_high_s"]


def test_validation_contrasts_are_differences_of_condition_means():
    runs, meta = ceiling.load(TINY)
    table = ceiling.validation_table(TINY).set_index("contrast")
    v = runs[runs["workload"] == "validate"]
    cpu = (v["sys"] + v["user"]).groupby(v["label"]).mean()
    row = table.loc["validate-s1-d4 - validate-s1-d1"]
    assert row["extra_cpu_s"] == pytest.approx(cpu["validate-s1-d4"] - cpu["validate-s1-d1"])
    # the recovery: extra time sampled under the anon_vma functions over the extra CPU
    # time (rusage), so that lost samples count against it as well as misplaced ones
    sm = ceiling.sample_summary(TINY, v)
    anon = (sm["samples_anon"] * sm["period_s"]).groupby(sm["label"]).mean()
    assert row["anon_share_of_extra"] == pytest.approx(
        (anon["validate-s1-d4"] - anon["validate-s1-d1"])
        / (cpu["validate-s1-d4"] - cpu["validate-s1-d1"]))
    counts = meta["validation_counts"]
    # deeper chains add AVCs only, three more per VMA with an anon_vma per fork
    assert row["extra_anon_vmas"] == 0
    k, forks = counts["validate-s1-d1"]["k"], counts["validate-s1-d1"]["forks"]
    vmas_with_anon_vma = counts["validate-s1-d1"]["anon_vmas"]    # one new anon_vma each
    assert row["extra_avcs"] == forks * 3 * vmas_with_anon_vma
    assert vmas_with_anon_vma > k


def test_lock_summary_counts_every_recorded_wait_of_the_build():
    summary = ceiling.lock_summary(TINY)
    runs = pd.read_csv(TINY / "runs.csv")
    total = 0
    for order in runs.loc[runs["kind"] == "locks", "order"]:
        lk = ceiling.locks(TINY, int(order))
        total += int(lk.loc[lk["group"] == "build", "waits"].sum())
    assert summary["waits"].sum() == total
    assert set(summary["jobs"]) == {2, 4}


@pytest.mark.perf
def test_ceiling_campaign_records_the_forks_of_a_tiny_workload(live_kernel, tmp_path,
                                                               monkeypatch):
    """Every pass once at tiny size; the trace pass finds exactly dash's 2 mm copies."""
    monkeypatch.setenv("RMAPLAB_CACHE", str(tmp_path / "cache"))
    out = subprocess.run(
        [sys.executable, "-m", "rmaplab", "ceiling", "--oversubscribed", "4", "--repeats", "1",
         "--validate", "8,20,1", "--out", str(tmp_path / "raw"), "--",
         "sh", "-c", "x=$(/bin/true); y=$(/bin/true)"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (directory,) = (tmp_path / "raw").iterdir()
    runs, meta = ceiling.load(directory)
    assert sorted(runs["label"]) == sorted(
        ["cmd/plain-j2", "cmd/trace-j2", "cmd/sample-j2", "cmd/locks-j2", "cmd/plain-j4",
         "cmd/locks-j4", *ceiling.VALIDATION])
    brackets = ceiling.bracket_summary(directory).set_index("component")
    assert brackets.loc["fork", "n"] == 2 and brackets.loc["exec", "n"] == 2
    assert brackets.loc["exit", "n"] == 3
    samples = ceiling.sample_summary(directory)
    assert (samples["samples_kernel"] + samples["samples_user"] > 0).all()
    assert meta["validation_counts"]["validate-s1-d4"]["avcs"] > \
        meta["validation_counts"]["validate-s1-d1"]["avcs"]
    assert not list((tmp_path / "cache" / "staging" / "ceiling").iterdir())   # published


def test_mean_ci_matches_scipy():
    from scipy import stats

    x = np.array([1.0, 2.0, 4.0])
    mean, lo, hi = ceiling._mean_ci(x)
    ref = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(ref)


def test_sample_summary_counts_samples_deferred_to_an_irq_enable_site(tmp_path):
    """A hand-made sample run: 7 build samples (2 user, 5 kernel; 3 under anon_vma
    functions, of which 2 have an irq re-enable site as leaf, as a cpu-clock sample
    deferred by an irq-off section has), one sample of another process at a re-enable
    site.  The summary's counts are these, by hand."""
    import gzip
    import json

    folded = ("build;[user] 2\n"
              "build;exit_mmap;unlink_anon_vmas;_raw_spin_unlock_irqrestore 1\n"
              "build;dup_mmap;anon_vma_fork;anon_vma_clone;kmem_cache_alloc_noprof;"
              "_raw_spin_unlock_irq 1\n"
              "build;dup_mmap;anon_vma_fork;anon_vma_clone;down_write 1\n"
              "build;do_syscall_64;finish_task_switch.isra.0 1\n"
              "build;do_syscall_64;copy_page 1\n"
              "other;_raw_spin_unlock_irqrestore 1\n")
    (tmp_path / "run-001.folded.txt.gz").write_bytes(gzip.compress(folded.encode()))
    (tmp_path / "run-001.stats.json").write_text(json.dumps({"period_ns": 250000}))
    runs = pd.DataFrame([{"order": 1, "kind": "sample", "label": "x", "workload": "build",
                          "shell": "sh", "jobs": 2, "sys": 0.01, "user": 0.02}])
    (row,) = ceiling.sample_summary(tmp_path, runs).to_dict(orient="records")
    assert row["samples_user"] == 2 and row["samples_kernel"] == 5
    assert row["samples_anon"] == 3 and row["samples_anon_irq_site"] == 2
    assert row["samples_kernel_irq_site"] == 3
    assert row["samples_anon_vma_fork"] == 2 and row["samples_unlink_anon_vmas"] == 1
    assert row["samples_anon_lock"] == 2 and row["samples_anon_slab"] == 1
    assert row["samples_paths"] == 3     # dup_mmap twice, exit_mmap once
    assert row["period_s"] == pytest.approx(250e-6)


def test_a_denominator_of_zero_sys_is_a_clear_error():
    """Tick-accounted rusage gives a very short build 0 s of sys: no share can be taken."""
    from rmaplab.errors import RmaplabError

    runs = pd.DataFrame([{"kind": "plain", "shell": "sh", "jobs": 2, "failed": False,
                          "sys": 0.0}] * 2)
    with pytest.raises(RmaplabError, match="no sys time"):
        ceiling.denominator(runs, "sh", 2)


def test_each_shell_is_read_from_the_newest_campaign_that_sampled_its_builds():
    import csv

    from rmaplab.measure import data

    newest: dict[str, str] = {}
    for directory in data.campaigns("ceiling"):          # oldest first: later ones win
        with open(directory / "runs.csv", newline="") as f:
            for row in csv.DictReader(f):
                if (row["workload"], row["kind"], row["failed"]) == ("build", "sample", "False"):
                    newest[row["shell"]] = directory.name
    chosen = ceiling.campaign_per_shell()
    assert {s: p.name for s, p in chosen.items()} == newest
    assert len(set(chosen.values())) == len(chosen)       # today: one campaign per shell
    oldest = data.campaigns("ceiling")[0]                 # named: every shell from it
    named = ceiling.campaign_per_shell(oldest.name)
    assert named and {p.name for p in named.values()} == {oldest.name}
    with pytest.raises(RmaplabError, match="no runs.csv"):
        ceiling.campaign_per_shell("19700101T000000Z-ceiling")
