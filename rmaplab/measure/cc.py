"""Compile the project's C programs on demand with gcc, cached by source and flags."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.paths import cache_dir


def build(name: str, source: bytes, flags: Sequence[str], what: str) -> Path:
    """``name`` compiled from ``source`` into the cache; rebuilt when source or flags change.

    ``what`` says in an error what the program is for (e.g. "the micro workloads").
    """
    digest = hashlib.sha256(source + b"\0" + " ".join(flags).encode()).hexdigest()[:12]
    exe = cache_dir() / f"{name}-{digest}" / name
    if exe.exists():
        return exe
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RmaplabError(f"gcc not found (needed to build {what})",
                           hint="apt-get install gcc libc6-dev")
    exe.parent.mkdir(parents=True, exist_ok=True)
    c_file = exe.parent / f"{name}.c"
    atomic.write_bytes(c_file, source)
    tmp = exe.with_name(f".{name}.tmp")
    proc = subprocess.run([gcc, *flags, "-o", str(tmp), str(c_file)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RmaplabError(f"gcc failed on {name}.c: {proc.stderr.strip()[-400:]}",
                           hint=f"needed to build {what}")
    tmp.replace(exe)        # atomic: a concurrent user never runs a half-written binary
    return exe
