"""The kernel-build workload: Debian's linux-source-6.12, a config (tinyconfig), `make -j2`.

The tree is unpacked once per config into a cache outside the repository
(``$RMAPLAB_CACHE``, default ~/.cache/rmaplab): ``linux-source-6.12`` for
tinyconfig, ``linux-source-6.12-<config>`` for any other.  Each measured run is
preceded by an unmeasured ``make -s clean``.  The recipes' shell is a condition:

* ``sh``: the default /bin/sh (dash 0.5.12 on Debian 12: vfork for external commands);
* ``bash``: ``SHELL=/bin/bash`` (forks every external command but the last of a
  ``-c`` string);
* ``dash2019``: ``SHELL=<dash-2019> CONFIG_SHELL=<dash-2019>``
  (rmaplab.measure.dash2019: forks every external command, as Debian 10's dash 0.5.10.2
  did).  CONFIG_SHELL is the shell kbuild runs its helper scripts with
  (``$(CONFIG_SHELL) mkcapflags.sh``; ``sh`` in the top Makefile), so every shell the
  build starts by name is dash-2019; only scripts exec'd through ``#!/bin/sh`` still
  get the system's dash.

Each shell is built under perf stat (counts, labels ``sh``/``bash``/``dash2019``) and,
interleaved with those, without perf (labels ``<shell>-plain``: wait4 rusage, what
`time` reports).  The uninstrumented runs are the builds' true times:
:func:`sys_seconds` serves them wherever sys time divides something.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from rmaplab.errors import RmaplabError
from rmaplab.measure import data
from rmaplab.measure.run import Condition
from rmaplab.paths import cache_dir

SOURCE_PACKAGE = "linux-source-6.12"
TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
BUILD_DEPS = ["linux-source-6.12", "flex", "bison", "libelf-dev", "cpio", "bc", "make", "gcc",
              "libssl-dev"]
SHELLS = ("sh", "bash", "dash2019")
DEFAULT_CONFIG = "tinyconfig"


def config_slug(config: str) -> str:
    """``config`` (make targets, e.g. "tinyconfig kvm_guest.config") as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", config).strip("-")


def tree_name(config: str) -> str:
    """Cache directory of the tree for ``config``."""
    if config == DEFAULT_CONFIG:
        return SOURCE_PACKAGE
    return f"{SOURCE_PACKAGE}-{config_slug(config)}"


def trace_label(config: str, shell: str) -> str:
    """Label of a traced build: ``kbuild-SHELL`` for tinyconfig (what rmaplab.generator
    loads), ``kbuild-CONFIG-SHELL`` otherwise."""
    if config == DEFAULT_CONFIG:
        return f"kbuild-{shell}"
    return f"kbuild-{config_slug(config)}-{shell}"


def ensure_source(config: str = DEFAULT_CONFIG,
                  log=lambda s: print(s, file=sys.stderr, flush=True)) -> Path:
    """The unpacked tree configured with ``make <config>``; installs and unpacks it if needed."""
    tree = cache_dir() / tree_name(config)
    if not TARBALL.exists():
        from rmaplab.kernel.source import apt_install  # imports this module: not at the top

        apt_install(BUILD_DEPS, log)
    for tool in ("flex", "bison", "bc", "make", "gcc"):
        if shutil.which(tool) is None:
            raise RmaplabError(f"{tool} is missing", hint="apt-get install " + " ".join(BUILD_DEPS))
    if not (tree / UNPACKED).exists():
        if (tree / ".config").exists():
            # Unpacked by an rmaplab without the marker: it ran `make CONFIG` only after a
            # complete unpack, so a tree with a .config is complete.
            (tree / UNPACKED).write_text("unpacked before the marker existed\n")
        else:
            unpack(TARBALL, tree, log, top=SOURCE_PACKAGE)
    if not (tree / ".config").exists():
        log(f"make {config} ...")
        proc = subprocess.run(["make", "-s", *config.split()], cwd=tree,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              errors="replace")
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            raise RmaplabError(f"make {config} failed in {tree}: {tail[0]}")
    return tree


# Written last into an unpacked tree: a tree without it (or a .config) is incomplete,
# an interrupted unpack, and is unpacked again.
UNPACKED = ".rmaplab-unpacked"


def unpack(tarball: Path, tree: Path, log=lambda s: None, top: str | None = None) -> None:
    """Unpack ``tarball`` (one top directory, ``top``, by default named like ``tree``) into
    ``tree``, atomically: into a temporary sibling, renamed when complete, so an
    interrupted unpack never leaves a tree that looks finished."""
    log(f"unpacking {tarball} into {tree} ...")
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{tree.name}.", suffix=".unpacking"))
    try:
        proc = subprocess.run(["tar", "-xJf", str(tarball), "-C", str(tmp)],
                              stderr=subprocess.PIPE, text=True, errors="replace")
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            raise RmaplabError(f"tar could not unpack {tarball}: {tail[0]}")
        unpacked = tmp / (top or tree.name)
        if not unpacked.is_dir():
            raise RmaplabError(f"{tarball} holds no {top or tree.name}/ directory")
        (unpacked / UNPACKED).write_text(f"unpacked from {tarball}\n")
        if tree.exists():            # an incomplete tree left by an interrupted unpack
            shutil.rmtree(tree)
        os.rename(unpacked, tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def shell_args(shell: str) -> list[str]:
    """make's command-line variables that select the recipes' shell."""
    if shell == "sh":
        return []
    if shell == "bash":
        return ["SHELL=/bin/bash"]
    if shell == "dash2019":
        from rmaplab.measure import dash2019

        exe = dash2019.binary()
        return [f"SHELL={exe}", f"CONFIG_SHELL={exe}"]
    raise RmaplabError(f"unknown shell {shell!r}", hint="one of: " + ", ".join(SHELLS))


def build_command(shell: str, jobs: int = 2) -> list[str]:
    return ["make", "-s", f"-j{jobs}", *shell_args(shell)]


# User-Mode Linux does not select ARCH_WANT_DEFAULT_TOPDOWN_MMAP_LAYOUT, so mm/util.c's
# generic arch_pick_mmap_layout() places every guest mmap bottom-up from TASK_UNMAPPED_BASE
# without randomisation.  x86-64 places them top-down below the stack.  The reuse rules of
# v5.5 and wei-intended look at the neighbouring VMA, so the order matters: a host build run
# under the legacy layout (personality ADDR_COMPAT_LAYOUT, which x86's mmap_is_legacy()
# honours, plus ADDR_NO_RANDOMIZE) is the host-side twin of a build inside the UML kernel.
LEGACY_LAYOUT_NOTE = ("legacy: setarch -L -R (ADDR_COMPAT_LAYOUT | ADDR_NO_RANDOMIZE), "
                      "bottom-up from TASK_UNMAPPED_BASE as in a User-Mode Linux guest")


def legacy_layout(cmd: list[str]) -> list[str]:
    """``cmd`` run under the legacy (bottom-up, unrandomised) mmap layout, inherited by
    every process it forks and execs."""
    if shutil.which("setarch") is None:
        raise RmaplabError("setarch is missing", hint="apt-get install util-linux")
    return ["setarch", platform.machine(), "--addr-compat-layout", "--addr-no-randomize", *cmd]


PLAIN = "-plain"


def conditions(tree: Path, jobs: int = 2, shells: tuple[str, ...] = ("sh", "bash"),
               plain: bool = True) -> list[Condition]:
    """Each shell under perf stat and, with ``plain``, without perf (``<shell>-plain``)."""
    clean = ["make", "-s", "clean"]
    out = []
    for shell in shells:
        build = build_command(shell, jobs)
        out.append(Condition(shell, build, cwd=str(tree), before=clean))
        if plain:
            out.append(Condition(shell + PLAIN, build, cwd=str(tree), before=clean,
                                 instrumented=False))
    return out


def with_shell(runs: pd.DataFrame) -> pd.DataFrame:
    """Measured, successful runs with ``shell`` and ``instrumented`` columns.

    Campaigns recorded before uninstrumented runs existed have no ``instrumented``
    column: all their runs were under perf stat.
    """
    good = runs[~runs["warmup"].astype(bool) & ~runs["failed"].astype(bool)].copy()
    good["instrumented"] = (good["instrumented"].astype(bool) if "instrumented" in good
                            else True)
    good["shell"] = good["label"].str.removesuffix(PLAIN)
    return good


def overhead(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """What perf stat's counters add to each shell's real/user/sys: plain (A) vs perf (B).

    One row per shell and metric with rmaplab.stats' comparison (change of means in
    percent of the plain mean, its Fieller-Welch CI, Welch's p, exact tests, and the
    verdict of rmaplab.stats.verdict's rules, Holm across the three metrics).
    """
    from rmaplab.measure.data import timing_frame
    from rmaplab.stats import compare

    good = with_shell(runs)
    if good["instrumented"].all() or not good["instrumented"].any():
        raise RmaplabError("the campaign has no pair of plain and instrumented runs",
                           hint="rmaplab kbuild (records both since the plain runs were added)")
    tidy = timing_frame(good, "kbuild")
    rows = []
    for shell in SHELLS:
        plain = tidy[tidy["group"] == shell + PLAIN]
        perf_ = tidy[tidy["group"] == shell]
        if plain.empty or perf_.empty:
            continue
        # log-scale inference needs positive times (a tick-accounted sys can be 0 s)
        both = pd.concat([plain, perf_])
        metrics = tuple(m for m in ("real", "user", "sys")
                        if (both.loc[both["metric"] == m, "seconds"] > 0).all())
        result = compare(plain, perf_, label_a="plain", label_b="perf stat", alpha=alpha,
                         same_file=True, metrics=metrics)
        for m in result.metrics:
            rows.append({"shell": shell, "metric": m.metric, "n_plain": m.n_a, "n_perf": m.n_b,
                         "plain_s": m.mean_a, "perf_s": m.mean_b, "overhead_pct": m.pct_change,
                         "ci_low": m.ci_low, "ci_high": m.ci_high, "p_welch": m.p_welch,
                         "p_mannwhitney": m.p_mannwhitney, "verdict": m.verdict})
    return pd.DataFrame(rows)


def newest_campaign(min_runs: int) -> Path:
    """The newest recorded kbuild campaign with at least ``min_runs`` measured, successful
    runs of every condition (shell x instrumentation): A/B and A/A splits need many runs of
    one condition, and the newest campaign may be a short one."""
    for directory in reversed(data.campaigns("kbuild")):
        runs, _ = data.load(directory)
        good = with_shell(runs)
        if len(good) and int(good.groupby(["shell", "instrumented"]).size().min()) >= min_runs:
            return directory
    raise RmaplabError(f"no kbuild campaign has {min_runs} runs of every condition",
                       hint=f"make kbuild-campaign ARGS='--runs {min_runs}'")


def sys_seconds(shell: str, runs: pd.DataFrame | None = None, source: str | None = None
                ) -> dict[str, Any]:
    """This machine's build sys time for ``shell``: the denominator of every sys share.

    Uninstrumented runs when the campaign has them (median); otherwise the runs under
    perf stat, flagged ``instrumented: True`` so that a reader sees which it is.
    ``runs``/``source`` default to the newest recorded kbuild campaign.
    """
    if runs is None:
        directory = data.latest("kbuild")
        runs, _ = data.load(directory)
        source = directory.name
    good = with_shell(runs)
    good = good[good["shell"] == shell]
    if good.empty:
        raise RmaplabError(f"no successful {shell} builds in the kbuild campaign {source}")
    plain = good[~good["instrumented"]]
    chosen = plain if not plain.empty else good
    return {"shell": shell, "sys_s": float(chosen["sys"].median()), "n": int(len(chosen)),
            "instrumented": plain.empty, "source": source,
            "what": ("median sys of uninstrumented builds (wait4 rusage)" if not plain.empty
                     else "median sys of builds under perf stat (no uninstrumented runs yet)")}


def _package_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def describe(tree: Path, config: str, shells: tuple[str, ...]) -> dict[str, Any]:
    """What a kernel-build measurement records besides the host: tree, config, shells."""
    config_file = tree / ".config"
    options = sum(1 for line in config_file.read_text().splitlines()
                  if re.match(r"CONFIG_\w+=[ym]", line)) if config_file.exists() else None
    meta: dict[str, Any] = {"kbuild": {
        "source_package": SOURCE_PACKAGE, "source_version": _package_version(SOURCE_PACKAGE),
        "config": config, "config_options_set": options, "shells": list(shells)}}
    if "dash2019" in shells:
        from rmaplab.measure import dash2019

        meta["dash2019"] = dash2019.describe()
    return meta
