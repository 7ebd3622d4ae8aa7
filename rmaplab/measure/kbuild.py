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
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rmaplab.errors import RmaplabError
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
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RmaplabError(f"{TARBALL} is missing",
                               hint="apt-get install " + " ".join(BUILD_DEPS))
        log(f"installing {' '.join(BUILD_DEPS)} with apt-get ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *BUILD_DEPS]):
            proc = subprocess.run(argv, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RmaplabError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-300:]}")
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


def conditions(tree: Path, jobs: int = 2, shells: tuple[str, ...] = ("sh", "bash")
               ) -> list[Condition]:
    clean = ["make", "-s", "clean"]
    return [Condition(shell, build_command(shell, jobs), cwd=str(tree), before=clean)
            for shell in shells]


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
