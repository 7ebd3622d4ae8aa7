"""The kernel-build workload: Debian's linux-source-6.12, tinyconfig, `make -j2`.

The tree is unpacked once into a cache outside the repository
(``$RMAPLAB_CACHE``, default ~/.cache/rmaplab).  Each measured run is preceded by an
unmeasured ``make -s clean``.  Two conditions: the default /bin/sh (dash on Debian)
and ``SHELL=/bin/bash`` for make's recipes (bash forks where dash vforks, closer to a
2019 userland).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rmaplab.errors import RmaplabError
from rmaplab.measure.run import Condition
from rmaplab.paths import cache_dir

SOURCE_PACKAGE = "linux-source-6.12"
TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
BUILD_DEPS = ["linux-source-6.12", "flex", "bison", "libelf-dev", "cpio", "bc", "make", "gcc"]


def ensure_source(log=lambda s: print(s, file=sys.stderr, flush=True)) -> Path:
    """The unpacked, tinyconfig'd tree; installs and unpacks it if needed."""
    tree = cache_dir() / SOURCE_PACKAGE
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
            # Unpacked by an rmaplab without the marker: it ran tinyconfig only after a
            # complete unpack, so a tree with a .config is complete.
            (tree / UNPACKED).write_text("unpacked before the marker existed\n")
        else:
            unpack(TARBALL, tree, log)
    if not (tree / ".config").exists():
        log("make tinyconfig ...")
        proc = subprocess.run(["make", "-s", "tinyconfig"], cwd=tree, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, errors="replace")
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            raise RmaplabError(f"make tinyconfig failed in {tree}: {tail[0]}")
    return tree


# Written last into an unpacked tree: a tree without it (or a .config) is incomplete,
# an interrupted unpack, and is unpacked again.
UNPACKED = ".rmaplab-unpacked"


def unpack(tarball: Path, tree: Path, log=lambda s: None) -> None:
    """Unpack ``tarball`` (one top directory named like ``tree``) into ``tree``, atomically:
    into a temporary sibling, renamed when complete, so an interrupted unpack never
    leaves a tree that looks finished."""
    log(f"unpacking {tarball} into {tree.parent} ...")
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{tree.name}.", suffix=".unpacking"))
    try:
        proc = subprocess.run(["tar", "-xJf", str(tarball), "-C", str(tmp)],
                              stderr=subprocess.PIPE, text=True, errors="replace")
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            raise RmaplabError(f"tar could not unpack {tarball}: {tail[0]}")
        unpacked = tmp / tree.name
        if not unpacked.is_dir():
            raise RmaplabError(f"{tarball} holds no {tree.name}/ directory")
        (unpacked / UNPACKED).write_text(f"unpacked from {tarball}\n")
        if tree.exists():            # an incomplete tree left by an interrupted unpack
            shutil.rmtree(tree)
        os.rename(unpacked, tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def conditions(tree: Path, jobs: int = 2) -> list[Condition]:
    clean = ["make", "-s", "clean"]
    build = ["make", "-s", f"-j{jobs}"]
    return [
        Condition("sh", build, cwd=str(tree), before=clean),
        Condition("bash", [*build, "SHELL=/bin/bash"], cwd=str(tree), before=clean),
    ]
