"""UML policy kernels: the patch series, the build cache, the guest, and the kernel as oracle.

Tests marked ``uml`` run in the kernel that `rmaplab kernel build` makes (the
``uml_kernel`` fixture: they skip without it, except in CI, which sets
RMAPLAB_REQUIRE_UML=1).  Their references are independent of the code under test:
the kernel's own SLUB statistics, the model, hand-computed cases.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmaplab.errors import RmaplabError
from rmaplab.kernel import build, config, micro, series, source
from rmaplab.kernel import run as krun
from rmaplab.model.counters import EVENT_COUNTERS
from rmaplab.model.policies import KERNEL_POLICIES as POLICIES  # the five in the kernel

MEASURE_KEYS = ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
                "avc_clone", "avc_prepare", "vma_alloc", "forks", "mm_forks", "execs")


def _rmaplab(*args: str, env: dict | None = None, cwd: str | None = None
             ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmaplab", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd)


# ------------------------------------------------------------------ the patch series

def test_series_is_numbered_one_change_per_patch_with_a_subsystem_subject():
    patches = series.load()
    assert [p.name[:4] for p in patches] == [f"{i:04d}" for i in range(1, len(patches) + 1)]
    for p in patches:
        text = p.data.decode()
        assert re.match(r"(mm/rmap|um): ", p.subject), p.subject
        body = text.split("\n\n", 1)[1].split("\n---\n", 1)[0]
        assert len(body.split()) > 40, f"{p.name}: the body must say what, why and from where"
        assert "Signed-off-by: " in body


def test_each_policy_patch_names_the_commit_it_emulates():
    text = {p.subject: p.data.decode() for p in series.load()}
    expect = {"v5.4": "7a3ef208e662", "v5.5": "4e4a9eb92133", "run-time policy": "2555283eb40d",
              "wei-intended": "Khlebnikov", "VM_WIPEONFORK": "don't prepare anon_vma"}
    for word, cite in expect.items():
        subject = next(s for s in text if word in s)
        assert cite in text[subject], (subject, cite)


def test_the_kernel_policies_are_the_models():
    names = set(re.findall(rb'\{ \.name = "([^"]+)"', b"".join(p.data for p in series.load())))
    assert {n.decode() for n in names} == set(POLICIES)


def test_counter_names_cover_measure_keys_and_are_the_models_names():
    patch = next(p for p in series.load() if "count anon_vma" in p.subject).data.decode()
    names = set(re.findall(r'= "(\w+)",', patch)) | set(re.findall(r'"(\w+) %ld\\n"', patch))
    share = next(p for p in series.load() if "v5.5" in p.subject).data.decode()
    names |= set(re.findall(r'= "(\w+)",', share))
    assert set(MEASURE_KEYS) <= names
    assert names <= set(EVENT_COUNTERS), names - set(EVENT_COUNTERS)


def _patch(name: str, path: str, old: str, new: str) -> series.Patch:
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        "/dev/null" if not old else f"a/{path}", f"b/{path}"))
    return series.Patch(name, f"Subject: [PATCH] um: {name}\n\nbody\n---\n{diff}".encode())


def test_sync_replaces_a_series_and_keeps_untouched_files_old(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.c").write_text("one\ntwo\n")
    (tree / "b.c").write_text("x\ny\n")
    p1 = _patch("0001-a.patch", "a.c", "one\ntwo\n", "one\nTWO\n")
    p2 = _patch("0002-b.patch", "b.c", "x\ny\n", "x\nY\n")
    p3 = _patch("0003-c.patch", "c.c", "", "new\n")
    assert series.sync(tree, [p1, p2, p3])
    assert (tree / "a.c").read_text() == "one\nTWO\n" and (tree / "c.c").read_text() == "new\n"
    old = 1_000_000_000_000_000_000
    for name in ("a.c", "b.c", "c.c"):
        os.utime(tree / name, ns=(old, old))
    assert not series.sync(tree, [p1, p2, p3])            # nothing to do
    p2b = _patch("0002-b.patch", "b.c", "x\ny\n", "x\nZ\n")
    assert series.sync(tree, [p1, p2b])
    assert (tree / "b.c").read_text() == "x\nZ\n" and not (tree / "c.c").exists()
    assert (tree / "a.c").stat().st_mtime_ns == old       # same content: make skips it
    assert (tree / "b.c").stat().st_mtime_ns != old
    assert [p.data for p in series.applied(tree)] == [p1.data, p2b.data]


def test_a_half_patched_tree_is_refused(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    series.applied_dir(tree).mkdir()
    (series.applied_dir(tree) / ".dirty").write_text("")
    with pytest.raises(RmaplabError, match="half-patched"):
        series.sync(tree, [])


def test_load_refuses_a_gap_in_the_numbering(tmp_path):
    for name in ("0001-a.patch", "0003-c.patch"):
        (tmp_path / name).write_bytes(_patch(name, "a.c", "x\n", "y\n").data)
    with pytest.raises(RmaplabError, match="patch 2 is named '0003-c.patch'"):
        series.load(tmp_path)


# ------------------------------------------------------------------ config, cache, results

def test_uml_config_parses_and_a_bad_line_is_an_error():
    opts = config.parse(config.fragment().decode(), "uml.config")
    assert opts["CONFIG_SLUB_STATS"] == "y" and opts["CONFIG_KERNEL_STACK_ORDER"] == "4"
    assert opts["CONFIG_MODULES"] == "n"
    with pytest.raises(RmaplabError, match="x.config:2: not a Kconfig line"):
        config.parse("CONFIG_A=y\nCONFIG_B y\n", "x.config")


def test_cache_key_depends_on_every_input():
    patches = [series.Patch("0001-a.patch", b"one"), series.Patch("0002-b.patch", b"two")]
    base = build.cache_key("6.12.118-1", patches, b"CONFIG_X=y\n", "gcc 12")
    assert base == build.cache_key("6.12.118-1", list(patches), b"CONFIG_X=y\n", "gcc 12")
    changed = [build.cache_key("6.12.119-1", patches, b"CONFIG_X=y\n", "gcc 12"),
               build.cache_key("6.12.118-1", [patches[0], series.Patch("0002-b.patch", b"tw0")],
                               b"CONFIG_X=y\n", "gcc 12"),
               build.cache_key("6.12.118-1", patches, b"CONFIG_X=n\n", "gcc 12"),
               build.cache_key("6.12.118-1", patches, b"CONFIG_X=y\n", "gcc 13")]
    assert base not in changed and len(set(changed)) == 4


def test_result_file_becomes_differences():
    text = ("status exited 3\nstrays 1\nbefore\nanon_vma_alloc 10\navc_alloc 20\nforks 5\n"
            "slab anon_vma alloc_fastpath 100\nslab anon_vma alloc_slowpath 5\n"
            "slab anon_vma_chain alloc_fastpath 7\nslab anon_vma_chain alloc_slowpath 0\n"
            "after\nanon_vma_alloc 13\navc_alloc 27\nforks 7\n"
            "slab anon_vma alloc_fastpath 102\nslab anon_vma alloc_slowpath 6\n"
            "slab anon_vma_chain alloc_fastpath 14\nslab anon_vma_chain alloc_slowpath 0\n")
    res = krun._parse_result(text, "result")
    assert (res["anon_vma_alloc"], res["avc_alloc"], res["forks"]) == (3, 7, 1)
    assert res["slab"] == {"anon_vma": 3, "anon_vma_chain": 7, "vm_area_struct": 0}
    assert (res["exit_status"], res["failed"], res["strays"]) == (3, True, 1)
    signaled = krun._parse_result(text.replace("exited 3", "signaled 9"), "r")
    assert signaled["exit_status"] == -9
    missing = krun._parse_result(text.replace("exited 3", "exec-failed ENOENT"), "r")
    assert missing["exit_status"] is None and "cannot execute: ENOENT" in missing["error"]
    nodir = krun._parse_result(text.replace("exited 3", "chdir-failed ENOENT"), "r")
    assert "directory: ENOENT" in nodir["error"]
    with pytest.raises(RmaplabError, match="incomplete"):
        krun._parse_result(text.split("after")[0], "r")


def test_jobs_the_guest_cannot_run_are_refused_before_booting(tmp_path):
    for job, match in [(krun.Job("v9.9", ["/bin/true"]), "unknown policy"),
                       (krun.Job("v6.0", ["true"]), "not an absolute path"),
                       (krun.Job("v6.0", []), "empty command"),
                       (krun.Job("v6.0", ["/bin/echo", "a\0b"]), "NUL")]:
        with pytest.raises(RmaplabError, match=match):
            krun.check_job(job)
    spaced = tmp_path / "with space"
    spaced.mkdir()
    with pytest.raises(RmaplabError, match="spaces"):
        krun.check_path(spaced)
    with pytest.raises(RmaplabError, match="not an existing absolute directory"):
        krun.check_path("relative/dir")


def test_static_busybox_is_recognised_as_static():
    if source.BUSYBOX.exists():
        assert source.is_static_elf(source.BUSYBOX)
    assert not source.is_static_elf(Path(os.path.realpath(sys.executable)))


# ------------------------------------------------------------------ the built kernel

def _tree() -> Path:
    tree, _ = source.ensure_tree(log=lambda s: None)
    return tree


@pytest.mark.uml
def test_checkpatch_passes_on_every_patch(uml_kernel):
    """The tree's own scripts/checkpatch.pl --strict: no errors, warnings or checks.

    Two message types are ignored: FILE_PATH_CHANGES ("does MAINTAINERS need
    updating?": the counters' two new files are the project's, not a subsystem's) and
    UNKNOWN_COMMIT_ID (the source package has no git history to look the cited
    upstream commits up in; checkpatch still checks how they are cited).
    """
    tree = _tree()
    for p in series.load():
        out = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--no-summary",
                              "--ignore", "FILE_PATH_CHANGES,UNKNOWN_COMMIT_ID", "-"],
                             cwd=tree, input=p.data, capture_output=True)
        assert out.returncode == 0, f"{p.name}:\n{out.stdout.decode()}{out.stderr.decode()}"


@pytest.mark.uml
def test_counters_equal_the_slab_statistics_under_every_policy(uml_kernel):
    """/proc/rmaplab_counters totals == SLUB alloc_fastpath+alloc_slowpath (slab_nomerge)."""
    exe = str(micro.micro.binary())
    work = [["/bin/sh", "-c", "for i in 1 2 3; do x=$(echo $i); done; (true) | cat"],
            [exe, "split", "8", "4"], [exe, "chainx", "6", "5"], [exe, "mprotect-merge", "9", "2"]]
    jobs = [(p, argv) for p in POLICIES for argv in work]
    for res in krun.run_batch(jobs, kernel=uml_kernel):
        assert not res["failed"], res
        assert res["anon_vma_alloc"] == res["slab"]["anon_vma"] > 0, res
        assert res["avc_alloc"] == res["slab"]["anon_vma_chain"] > 0, res
        assert res["vma_alloc"] == res["slab"]["vm_area_struct"] > 0, res
        assert res["anon_vma_alloc"] == res["anon_vma_fork"] + res["anon_vma_prepare"]
        assert res["avc_clone"] == sum(res[f"avc_clone_{c}"]
                                       for c in ("fork", "split", "merge", "copy_vma"))


@pytest.mark.uml
def test_micro_workloads_match_the_model_under_every_policy(uml_kernel):
    """(K,N)-(0,N) of every call-site counter, kernel vs model (merge rule singular)."""
    table = micro.compare(k=8, n=4)
    assert len(table) == len(POLICIES) * len(micro.micro.MODES) * len(micro.COMPARED)
    bad = table[~table["match"]]
    assert bad.empty, bad.to_string()
    # The policies really differ where reuse applies (split: shared anon_vmas at fork).
    split = table[(table["mode"] == "split") & (table["counter"] == "anon_vma_fork")]
    assert split.set_index("policy")["live"]["v5.5"] < split.set_index("policy")["live"]["v6.0"]


@pytest.mark.uml
def test_counts_are_deterministic(uml_kernel):
    exe = str(micro.micro.binary())
    jobs = [("v5.4", [exe, "chainw", "5", "4"])] * 3
    first, *rest = krun.run_batch(jobs, kernel=uml_kernel)
    for res in rest:
        assert {k: res[k] for k in MEASURE_KEYS} == {k: first[k] for k in MEASURE_KEYS}


@pytest.mark.uml
def test_policy_switches_at_run_time_and_refuses_unknown_names(uml_kernel):
    param = "/sys/module/rmap/parameters/reuse_policy"
    jobs = [(p, ["/bin/cat", param]) for p in POLICIES]
    jobs.append(("v5.5", ["/bin/sh", "-c", f"echo bogus > {param}; echo $?; cat {param}"]))
    results = krun.run_batch(jobs, kernel=uml_kernel)
    assert [r["stdout"].strip() for r in results[:-1]] == list(POLICIES)
    assert results[-1]["stdout"].split()[-1] == "v5.5" and results[-1]["stdout"].split()[0] != "0"


@pytest.mark.uml
def test_boot_parameter_is_parsed_by_the_policy_switch(uml_kernel, monkeypatch):
    """rmap.reuse_policy= on the boot line reaches the parameter's parser (which rejects junk)."""
    real = krun.boot_argv

    def junk_policy(*args):
        return [a if not a.startswith("rmap.reuse_policy=") else "rmap.reuse_policy=junk"
                for a in real(*args)]

    good = krun.run_batch([("v6.0", ["/rmaplab/busybox", "dmesg"])], kernel=uml_kernel)
    monkeypatch.setattr(krun, "boot_argv", junk_policy)
    bad = krun.run_batch([("v6.0", ["/rmaplab/busybox", "dmesg"])], kernel=uml_kernel)
    unknown = [ln for ln in good[0]["stdout"].splitlines() if "Unknown kernel command" in ln]
    assert unknown and not any("rmap.reuse_policy" in ln for ln in unknown)
    assert "invalid for parameter" not in good[0]["stdout"]
    assert "`junk' invalid for parameter `rmap.reuse_policy'" in bad[0]["stdout"]


@pytest.mark.uml
def test_failed_commands_are_failures(uml_kernel):
    jobs = [("v6.0", ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]),
            ("v6.0", ["/bin/sh", "-c", "kill -9 $$"]),
            ("v6.0", ["/no/such/program"]),
            krun.Job("v6.0", ["/bin/true"], cwd="/no/such/dir"),
            ("v6.0", ["/bin/true"])]
    exit3, killed, missing, nodir, ok = krun.run_batch(jobs, kernel=uml_kernel)
    assert (exit3["exit_status"], exit3["failed"]) == (3, True)
    assert (exit3["stdout"], exit3["stderr"]) == ("out\n", "err\n")
    assert (killed["exit_status"], killed["failed"]) == (-9, True)
    assert missing["failed"] and "cannot execute: ENOENT" in missing["error"]
    assert nodir["failed"] and "directory: ENOENT" in nodir["error"]
    assert (ok["exit_status"], ok["failed"], ok["forks"], ok["execs"]) == (0, False, 0, 1)


@pytest.mark.uml
def test_a_guest_that_stops_is_reported_and_the_batch_goes_on(uml_kernel):
    """A job that halts the guest (as a kernel BUG would) fails; the next runs in a new boot."""
    jobs = [("v6.0", ["/bin/true"]),
            ("v6.0", ["/rmaplab/busybox", "poweroff", "-f"]),
            ("v5.4", ["/bin/cat", "/sys/module/rmap/parameters/reuse_policy"])]
    batch = krun.run_jobs(jobs, kernel=uml_kernel)
    first, crashed, after = batch.results
    assert not first["failed"] and batch.boots == 2
    assert crashed["failed"] and "stopped during this job" in crashed["error"]
    assert after["stdout"] == "v5.4\n"


@pytest.mark.uml
def test_host_paths_are_read_only_unless_mounted_writable(uml_kernel, tmp_path):
    from rmaplab.paths import cache_dir

    # a host path the guest sees (the checkout may sit under /tmp, which it does not)
    probe = cache_dir() / "uml-read-only-probe"
    ro = krun.run_batch([("v6.0", ["/bin/sh", "-c", f"echo hi > {probe}"])], kernel=uml_kernel)[0]
    assert ro["failed"] and "Read-only file system" in ro["stderr"] and not probe.exists()
    # tmp_path is under /tmp, which the guest otherwise has its own of.
    rw = krun.run_batch([("v6.0", ["/bin/sh", "-c", f"echo hi > {tmp_path}/f"])],
                        kernel=uml_kernel, writable=[tmp_path])[0]
    assert not rw["failed"] and (tmp_path / "f").read_text() == "hi\n"


@pytest.mark.uml
def test_kernel_run_json_has_the_measure_keys(uml_kernel):
    # cwd "/": the guest has it whatever the checkout's path (/tmp is the guest's own)
    out = _rmaplab("kernel", "run", "--policy", "v5.5", "--json", "--", "sh", "-c", "x=$(true)",
                   cwd="/")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert set(MEASURE_KEYS) <= set(res) and res["policy"] == "v5.5"
    assert res["mm_forks"] == 1 and res["exit_status"] == 0
    assert (res["real"], res["user"], res["sys"]) == (None, None, None)
    assert res["kernel"]["key"] == uml_kernel.key and len(res["kernel"]["patches"]) >= 9
    fail = _rmaplab("kernel", "run", "--policy", "all", "--json", "--", "false", cwd="/")
    assert fail.returncode == 1
    runs = json.loads(fail.stdout)["runs"]
    assert [r["policy"] for r in runs] == list(POLICIES) and all(r["failed"] for r in runs)


@pytest.mark.uml
def test_a_second_build_does_nothing(uml_kernel):
    lines: list[str] = []
    t0 = time.perf_counter()
    kernel = build.build(log=lines.append)
    assert kernel.key == uml_kernel.key and any("up to date" in ln for ln in lines)
    assert not any("compile" in ln for ln in lines)
    assert time.perf_counter() - t0 < 60


def test_kbuild_campaign_cleans_before_each_counted_build(tmp_path):
    from rmaplab.kernel import kbuild

    jobs = kbuild.jobs_for(["v5.4", "v6.0"], ["sh", "bash"], tmp_path, 2)
    assert [(j.policy, j.argv[1:]) for j in jobs] == [
        ("v5.4", ["-s", "clean"]), ("v5.4", ["-s", "-j2"]),
        ("v5.4", ["-s", "clean"]), ("v5.4", ["-s", "-j2", "SHELL=/bin/bash"]),
        ("v6.0", ["-s", "clean"]), ("v6.0", ["-s", "-j2"]),
        ("v6.0", ["-s", "clean"]), ("v6.0", ["-s", "-j2", "SHELL=/bin/bash"])]
    assert all(j.cwd == str(tmp_path) and j.argv[0] == "/usr/bin/make" for j in jobs)


def test_recorded_campaigns_load_as_one_table(tmp_path):
    from rmaplab.kernel import kbuild

    for i, policy in enumerate(("v5.4", "v5.5")):
        d = tmp_path / f"2026-{i}-kbuild"
        d.mkdir()
        (d / "metadata.json").write_text(json.dumps({"kernel": {"key": "k1"}}))
        (d / "runs.csv").write_text(f"policy,shell,anon_vma_alloc\n{policy},sh,{100 + i}\n")
    t = kbuild.load(sorted(tmp_path.iterdir()))
    assert list(t["policy"]) == ["v5.4", "v5.5"] and list(t["anon_vma_alloc"]) == [100, 101]
    assert set(t["kernel_key"]) == {"k1"}
    with pytest.raises(RmaplabError, match="no kbuild campaigns"):
        kbuild.load([])


def test_kbuild_campaign_warms_a_tree_once_in_the_guest_and_counts_only_later_builds(
        tmp_path, monkeypatch):
    """The first guest build of a tree also rebuilds kbuild's host tools: it runs first,
    uncounted, once per tree (a marker file); the recorded rows are the counted builds."""
    from types import SimpleNamespace

    from rmaplab.kernel import kbuild

    seen = []

    def fake_run_jobs(todo, **_):
        seen.append([" ".join(j.argv) if hasattr(j, "argv") else str(j) for j in todo])
        res = [{"failed": False, "error": None, "stderr": "", "stdout": "", "exit_status": 0,
                "strays": 0, "slab": {}, **{k: 100 + i for k in kbuild.COUNTED}}
               for i in range(len(todo))]
        return SimpleNamespace(results=res, boots=1,
                               kernel=SimpleNamespace(describe=lambda: {}))

    monkeypatch.setattr(kbuild, "run_jobs", fake_run_jobs)
    monkeypatch.setattr(kbuild.host, "describe", lambda: {})
    monkeypatch.setattr(kbuild.source, "kernel_version", lambda t: "6.12")
    monkeypatch.setattr(kbuild.source, "package_version", lambda: "x")
    tree = tmp_path / "tree"
    tree.mkdir()
    first, _ = kbuild._campaign(["v5.4", "v6.0"], ["sh"], 2, "1G", tmp_path / "out", tree,
                                lambda s: None)
    assert len(seen[0]) == 6                               # warm-up clean+build, then 2 x 2
    assert [r["policy"] for r in first["runs"]] == ["v5.4", "v6.0"]
    assert first["runs"][0]["anon_vma_alloc"] == 103      # result 3: not the warm-up's
    assert first["metadata"]["warm_up_build"] and (tree / kbuild.WARMED).exists()
    second, _ = kbuild._campaign(["v5.4"], ["sh"], 2, "1G", tmp_path / "out", tree,
                                 lambda s: None)
    assert len(seen[1]) == 2 and not second["metadata"]["warm_up_build"]
    assert second["runs"][0]["anon_vma_alloc"] == 101
