"""``rmaplab kernel build``: one UML kernel of linux-source-6.12 with the project's patches.

Steps (each reported with its elapsed time; a failure names the step and its log):

    tools     install missing Debian packages (apt-get, as root), check the tools
    source    unpack the tarball into $RMAPLAB_CACHE/uml/linux-<version>/ (atomically)
    patches   make the tree carry exactly rmaplab/kernel/patches/ (series.sync)
    config    defconfig + uml.config + olddefconfig into the object directory
    compile   make ARCH=um O=<obj> linux
    root      the guest's root directory (static busybox, init, runner)
    boot      boot the new binary once and run /rmaplab/busybox true under every policy
    install   copy it to $RMAPLAB_CACHE/uml/kernels/<key>/ with kernel.json

The key hashes the source package version, every patch, uml.config and the
compiler's version.  A kernel with the current key is reused as it is (a second
``kernel build`` does nothing); a changed patch rebuilds, in the same object
directory, only what the change touches.  One build runs at a time (a lock file).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.kernel import config, series, source

Log = Callable[[str], None]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Kernel:
    """A built kernel: the UML binary and what went into it (kernel.json)."""

    path: Path
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return self.meta["key"]

    def describe(self) -> dict[str, Any]:
        """What a measurement records about the kernel it ran on."""
        keys = ("version", "package_version", "key", "patches", "config_sha256", "cc")
        return {k: self.meta[k] for k in keys} | {"path": str(self.path)}


def compiler_version() -> str:
    proc = subprocess.run(["gcc", "--version"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RmaplabError("gcc --version failed", hint="apt-get install gcc")
    return proc.stdout.splitlines()[0].strip()


def cache_key(package_version: str, patches: list[series.Patch], fragment: bytes, cc: str) -> str:
    h = hashlib.sha256()
    for part in (package_version.encode(), fragment, cc.encode(),
                 *(p.name.encode() + b"\0" + p.data for p in patches)):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def kernels_dir() -> Path:
    return source.uml_dir() / "kernels"


def current_key() -> str:
    return cache_key(source.package_version(), series.load(), config.fragment(),
                     compiler_version())


def cached(key: str) -> Kernel | None:
    d = kernels_dir() / key
    if not (d / "kernel.json").exists():
        return None
    return Kernel(d / "linux", json.loads((d / "kernel.json").read_text()))


class Steps:
    """Progress: one line when a step starts and one when it ends, with elapsed times."""

    def __init__(self, names: list[str], log: Log) -> None:
        self.names = names
        self.log = log
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, log_file: Path | None = None) -> Iterator[None]:
        n = self.names.index(name) + 1
        self.log(f"[{n}/{len(self.names)}] {name} ...")
        t0 = time.perf_counter()
        try:
            yield
        except (RmaplabError, OSError, subprocess.SubprocessError) as e:
            where = f"; log: {log_file}" if log_file else ""
            raise RmaplabError(f"step '{name}' failed: {e}{where}") from e
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        self.log(f"[{n}/{len(self.names)}] {name} done in {self.seconds[name]:.1f} s "
                 f"(total {time.perf_counter() - self.start:.1f} s)")


STEPS = ["tools", "source", "patches", "config", "compile", "root", "boot", "install"]


@contextmanager
def _lock(log: Log) -> Iterator[None]:
    path = source.uml_dir() / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another kernel build ({path}) ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _compile(tree: Path, obj: Path, jobs: int, log_file: Path, log: Log) -> None:
    """make ... linux, output to the log, a progress line every 30 s."""
    argv = ["nice", "-n", "10", *config.make_argv(obj, f"-j{jobs}", "linux")]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(argv, cwd=tree, stdout=out, stderr=subprocess.STDOUT)
        t0 = time.perf_counter()
        while True:
            try:
                proc.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                compiled = log_file.read_bytes().count(b"\n  CC ")
                log(f"    compile: {compiled} objects, {time.perf_counter() - t0:.0f} s")
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
        raise RmaplabError(f"make exited with status {proc.returncode}: " + " | ".join(tail))


def _smoke_test(kernel: Kernel) -> None:
    from rmaplab.kernel.run import run_batch
    from rmaplab.model.policies import (
        KERNEL_POLICIES as POLICIES,  # the five patched into the kernel
    )

    busybox = "/rmaplab/busybox"
    results = run_batch([(p, [busybox, "true"]) for p in POLICIES], kernel=kernel)
    for res in results:
        if res["failed"] or "anon_vma_alloc" not in res:
            raise RmaplabError(f"{busybox} true failed under {res['policy']}: "
                               f"{res['error'] or res['stderr']}")


def build(jobs: int | None = None, fresh: bool = False, log: Log = _stderr) -> Kernel:
    """Build (or reuse) the kernel for the current patches and config."""
    jobs = jobs or os.cpu_count() or 1
    steps = Steps(STEPS, log)
    with _lock(log):
        logs = source.uml_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        build_log = logs / f"build-{stamp}.log"
        with steps.step("tools"):
            source.ensure_tools(log)
            cc = compiler_version()
            patches = series.load()
            version = source.package_version()
            key = cache_key(version, patches, config.fragment(), cc)
        existing = cached(key)
        if existing is not None and not fresh:
            log(f"kernel {key} is up to date: {existing.path}")
            return existing
        tree = source.tree_dir(version)
        obj = tree.parent / (tree.name + ".obj")
        if fresh:
            series.reset(tree)
            shutil.rmtree(obj, ignore_errors=True)
        with steps.step("source"):
            tree, version = source.ensure_tree(log)
        with steps.step("patches", build_log):
            changed = series.sync(tree, patches)
            log(f"    {len(patches)} patches " + ("applied" if changed else "already applied"))
        with steps.step("config", build_log):
            config.write(tree, obj, version, build_log)
        with steps.step("compile", build_log):
            _compile(tree, obj, jobs, build_log, log)
        with steps.step("root"):
            from rmaplab.kernel import guest

            guest.ensure_root()
        meta = {
            "key": key,
            "version": source.kernel_version(tree),
            "package_version": version,
            "patches": [{"name": p.name, "subject": p.subject, "sha256": p.sha256}
                        for p in patches],
            "config_sha256": hashlib.sha256(config.fragment()).hexdigest(),
            "cc": cc,
            "built": stamp,
            "jobs": jobs,
        }
        with steps.step("boot", build_log):
            _smoke_test(Kernel(obj / "linux", meta))
        with steps.step("install"):
            meta["step_seconds"] = steps.seconds
            target = kernels_dir() / key
            shutil.rmtree(target, ignore_errors=True)       # a --fresh rebuild
            with atomic.new_directory(target) as d:
                shutil.copy2(obj / "linux", d / "linux")
                (d / "kernel.json").write_text(json.dumps(meta, indent=1) + "\n")
            kernel = Kernel(target / "linux", meta)
        log(f"kernel {key}: {kernel.path} ({time.perf_counter() - steps.start:.0f} s)")
        return kernel


def ensure(log: Log | None = None) -> Kernel:
    """The kernel for the current patches and config, built first if there is none."""
    kernel = cached(current_key())
    return kernel if kernel is not None else build(log=log or _stderr)
