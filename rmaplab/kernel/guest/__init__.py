"""The guest's root directory: a static busybox, ``/init`` and the job runner.

The root is a host directory (``$RMAPLAB_CACHE/uml/roots/<hash>/``) that the kernel
mounts read-only through hostfs.  It holds

    /init               busybox sh script (init next to this module): mounts, then
                        execs the runner as PID 1
    /rmaplab/busybox    a copy of Debian's static busybox
    /rmaplab/runner     runner.c, compiled here with gcc -static
    /proc /sys /dev /tmp the guest's own (tmpfs on /tmp)
    /host               the host's / (read-only)
    /job                the batch's job directory on the host (read-write)
    every other name of the host's /, as a symlink to /host/NAME

so a host path means the same file inside the guest (read-only), except under
/proc, /sys, /dev and /tmp; host directories a job must write are mounted
read-write at their own path.  /bin/sh is therefore the host's (dash on Debian),
and the host's toolchain and dynamically linked programs run unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.kernel.source import BUSYBOX, uml_dir

DIRS = ("proc", "sys", "dev", "tmp", "host", "job", "rmaplab")
OWN = (*DIRS, "init")


def _data(name: str) -> bytes:
    return resources.files("rmaplab.kernel.guest").joinpath(name).read_bytes()


def _host_names() -> list[str]:
    return sorted(n for n in os.listdir("/") if n not in OWN)


def root_key() -> str:
    """Hash of everything the root is made of, including the host's top-level names."""
    h = hashlib.sha256()
    for part in (_data("runner.c"), _data("init"), BUSYBOX.read_bytes(),
                 "\n".join(_host_names()).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def compile_runner(dest: Path) -> None:
    src = dest.parent / "runner.c"
    src.write_bytes(_data("runner.c"))
    proc = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror",
                           "-o", str(dest), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RmaplabError(f"gcc -static failed on runner.c: {proc.stderr.strip()[-400:]}",
                           hint="apt-get install libc6-dev")
    src.unlink()


def ensure_root() -> Path:
    """The root directory for the current runner, init and busybox (built once)."""
    root = uml_dir() / "roots" / root_key()
    if (root / "init").exists():
        return root
    try:
        with atomic.new_directory(root) as d:
            for name in DIRS:
                (d / name).mkdir()
            shutil.copy2(BUSYBOX, d / "rmaplab" / "busybox")
            compile_runner(d / "rmaplab" / "runner")
            (d / "init").write_bytes(_data("init"))
            (d / "init").chmod(0o755)
            for name in _host_names():
                (d / name).symlink_to(f"/host/{name}")
    except OSError:
        if not (root / "init").exists():    # not a concurrent build of the same root
            raise
    return root
