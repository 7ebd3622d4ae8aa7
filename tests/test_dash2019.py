"""dash-2019: the patch reverts exactly dash's vfork call site, and the built shell forks."""

from __future__ import annotations

import os
import re

import pytest

from rmaplab.errors import RmaplabError
from rmaplab.measure import dash2019, run


def test_patch_touches_only_the_external_command_call_site_of_evalcommand():
    text = dash2019.patch_bytes().decode()
    assert re.findall(r"^diff --git a/(\S+)", text, re.M) == ["src/eval.c"]
    removed = re.findall(r"^-\t(.*)$", text, re.M)
    added = re.findall(r"^\+\t(.*)$", text, re.M)
    assert removed == ["\t\tjp = vforkexec(cmd, argv, path, cmdentry.u.index);", "\t\tbreak;"]
    assert "\t\tif (forkshell(jp, cmd, FORK_FG) != 0)" in added


def test_patch_header_names_the_upstream_commit_it_reverts():
    text = dash2019.patch_bytes().decode()
    assert dash2019.REVERTED_COMMIT[:12] in text.split("---", 1)[0]
    assert dash2019.describe()["patch_sha256"] == dash2019.patch_sha256()


def test_missing_build_tools_are_named(monkeypatch):
    monkeypatch.setattr(dash2019.shutil, "which", lambda name: None)
    monkeypatch.setattr(dash2019.os, "geteuid", lambda: 1000)
    with pytest.raises(RmaplabError, match="autoconf.*dpkg-dev"):
        dash2019._ensure_tools(lambda s: None)


@pytest.fixture(scope="module")
def dash2019_binary():
    try:
        return dash2019.binary(log=lambda s: None)
    except RmaplabError as e:
        if os.environ.get("RMAPLAB_REQUIRE_PERF") == "1":
            pytest.fail(f"dash-2019 must build here: {e}")
        pytest.skip(f"cannot build dash-2019: {e}")


def _mm_forks(argv: list[str]) -> dict[str, float]:
    runs, _ = run.campaign([run.Condition("x", argv)], record=False, log=lambda s: None)
    return runs[0].values


@pytest.mark.perf
@pytest.mark.slow
def test_dash2019_copies_its_mm_for_each_command_and_debians_dash_does_not(
        live_kernel, dash2019_binary):
    """`-c '/bin/true; /bin/true'`: dash-2019 forks twice (Debian's dash also forks the last
    command of -c), each fork allocating anon_vmas in anon_vma_fork; /bin/dash 0.5.12
    vforks both (no mm copied); bash forks the first and execs the last in place."""
    script = ["-c", "/bin/true; /bin/true"]
    old = _mm_forks([str(dash2019_binary), *script])
    assert old["mm_forks"] == 2 and old["forks"] == 2
    assert old["anon_vma_fork"] > 0
    new = _mm_forks(["/bin/dash", *script])
    assert new["mm_forks"] == 0 and new["forks"] == 2 and new["anon_vma_fork"] == 0
    assert _mm_forks(["/bin/bash", *script])["mm_forks"] == 1
