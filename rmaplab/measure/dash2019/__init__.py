"""dash-2019: a /bin/sh that copies its mm for every external command, as Debian 10's did.

Debian 10 (2019) shipped dash 0.5.10.2.  dash started external simple commands
with fork(2) until upstream commit e94a964e7dd0 ("eval: Add vfork support",
first released in 0.5.11, 2020); Debian's own patch 0004 (since 0.5.7-2, 2011)
keeps ``sh -c`` from exec'ing the last command in place, so under make every
external command of a recipe was a fork + exec: one mm copy each.  Today's dash
vforks them (no mm copy), which is why the recorded builds have few mm-copying forks.

This module builds that shell from Debian bookworm's dash source (``apt-get
source``, Debian patches applied) plus one patch in this directory that reverts
e94a964e7dd0's change to evalcommand(), configured as debian/rules does.  The
binary goes into the cache (``$RMAPLAB_CACHE/dash2019-<patch hash>/dash``),
never into the repository.  Subshells, pipelines and command substitutions fork
in both versions and are untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from rmaplab.errors import RmaplabError
from rmaplab.paths import cache_dir

SOURCE_PACKAGE = "dash"
SOURCE_VERSION = "0.5.12-2"                  # Debian 12 (bookworm)
UPSTREAM_DIR = "dash-0.5.12"
PATCH = "0001-eval-fork-for-external-simple-commands.patch"
REVERTED_COMMIT = "e94a964e7dd03d0dd6923d7fc62bc46bd4431189"
# debian/rules of dash 0.5.12-2: the same configure options and hardening flags.
CONFIGURE_OPTIONS = ["--disable-fnmatch", "--disable-lineno", "--disable-glob"]
BUILD_ENV = {"DEB_BUILD_MAINT_OPTIONS": "hardening=+all"}
# program -> Debian package that provides it
TOOLS = {"apt-get": "apt", "dpkg-source": "dpkg-dev", "dpkg-buildflags": "dpkg-dev",
         "autoreconf": "autoconf", "automake": "automake", "gcc": "gcc", "make": "make",
         "patch": "patch"}


def patch_bytes() -> bytes:
    return resources.files(__name__).joinpath(PATCH).read_bytes()


def patch_sha256() -> str:
    return hashlib.sha256(patch_bytes()).hexdigest()


def build_dir() -> Path:
    return cache_dir() / f"dash2019-{SOURCE_VERSION}-{patch_sha256()[:12]}"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ensure_tools(log) -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise RmaplabError("building dash-2019 needs " + ", ".join(missing),
                           hint="apt-get install " + " ".join(missing))
    log(f"installing {' '.join(missing)} with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                           *missing], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RmaplabError(f"apt-get install {' '.join(missing)} failed: "
                           f"{proc.stderr.strip()[-300:]}")


def _run(argv: list[str], cwd: Path, what: str, env: dict[str, str] | None = None,
         stdin: bytes | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, input=stdin,
                          capture_output=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-400:]
        raise RmaplabError(f"{what} failed (status {proc.returncode}): {tail}")
    return proc.stdout.decode(errors="replace")


def _fetch_source(into: Path) -> Path:
    proc = subprocess.run(["apt-get", "source", "-qq", f"{SOURCE_PACKAGE}={SOURCE_VERSION}"],
                          cwd=into, capture_output=True, text=True)
    src = into / UPSTREAM_DIR
    if proc.returncode != 0 or not (src / "src" / "eval.c").exists():
        raise RmaplabError(
            f"apt-get source {SOURCE_PACKAGE}={SOURCE_VERSION} failed: "
            f"{proc.stderr.strip()[-300:]}",
            hint="enable source packages: add deb-src to the 'Types:' lines of "
                 "/etc/apt/sources.list.d/debian.sources, then apt-get update")
    return src


def _flags() -> list[str]:
    env = {**os.environ, **BUILD_ENV}
    out = []
    for name in ("CFLAGS", "CPPFLAGS", "LDFLAGS"):
        value = subprocess.run(["dpkg-buildflags", "--get", name], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        out.append(f"{name}={value}")
    return out


def binary(log=_log) -> Path:
    """The dash-2019 executable, built into the cache on first use."""
    exe = build_dir() / "dash"
    if exe.exists():
        return exe
    _ensure_tools(log)
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="dash2019-build-") as tmp:
        log(f"building dash-2019 from Debian's {SOURCE_PACKAGE} {SOURCE_VERSION} + {PATCH} ...")
        src = _fetch_source(Path(tmp))
        _run(["patch", "-p1", "--forward"], src, f"applying {PATCH}", stdin=patch_bytes())
        _run(["autoreconf", "-fi"], src, "autoreconf")
        _run(["./configure", "-q", *CONFIGURE_OPTIONS, *_flags()], src, "configure",
             env=BUILD_ENV)
        _run(["make", "-s", "-j2"], src, "make")
        built = src / "src" / "dash"
        staging = Path(tmp) / "out"
        staging.mkdir()
        shutil.copy2(built, staging / "dash")
        (staging / "build.json").write_text(json.dumps(
            {**describe(), "binary_sha256": hashlib.sha256(built.read_bytes()).hexdigest(),
             "flags": _flags()}, indent=1) + "\n")
        target = build_dir()
        if not target.exists():
            staging.rename(target)            # atomic: a half-built dash is never used
    return exe


def describe() -> dict[str, Any]:
    """What a measurement with dash-2019 must record (goes into its metadata)."""
    info: dict[str, Any] = {
        "shell": "dash-2019",
        "source": f"Debian {SOURCE_PACKAGE} {SOURCE_VERSION} (apt-get source, Debian patches "
                  "applied)",
        "patch": PATCH, "patch_sha256": patch_sha256(),
        "reverts": f"dash {REVERTED_COMMIT[:12]} (eval: Add vfork support; dash 0.5.11)",
        "configure": CONFIGURE_OPTIONS,
    }
    built = build_dir() / "build.json"
    if built.exists():
        info["binary_sha256"] = json.loads(built.read_text()).get("binary_sha256")
    return info
