"""Write files and directories so that a crash never leaves a half-written result."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def writable_error(directory: Path) -> str | None:
    """Why new entries cannot be created in ``directory`` (its nearest existing ancestor
    if it does not exist yet), or None if they can.  Probes by creating one, because
    permission bits say nothing for root, read-only mounts or /proc."""
    probe = Path(directory)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        Path(tempfile.mkdtemp(dir=probe, prefix=".rmaplab-probe-")).rmdir()
    except OSError as e:
        return f"cannot create files in {probe} ({e.strerror or e})"
    return None


def write_bytes(path: Path, data: bytes) -> None:
    if path.exists() and not path.is_file():
        raise FileExistsError(errno.EEXIST, "exists and is not a regular file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes 0600; results are for everyone to read
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def reserve_directory(parent: Path, name: str) -> Path:
    """Create and return the empty directory ``parent/name``, or ``name-2``, ``name-3``...

    mkdir is atomic, so two runs that pick the same name (two measurements finishing in
    the same second) get different directories.  Fill it with :func:`new_directory`.
    """
    parent.mkdir(parents=True, exist_ok=True)
    for i in itertools.count(1):
        candidate = parent / (name if i == 1 else f"{name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


@contextmanager
def new_directory(path: Path, reserved: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it to ``path`` on success.

    Refuses to replace an existing directory: raw measurements are never overwritten.
    ``reserved``: ``path`` is the empty directory :func:`reserve_directory` made for
    this result; the rename replaces it (rename(2) may replace an empty directory).
    """
    if reserved:
        if any(path.iterdir()):
            raise FileExistsError(f"{path} is not empty; raw data is never overwritten")
    elif path.exists():
        raise FileExistsError(f"{path} exists; raw data is never overwritten")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except BaseException:
        if reserved:
            path.rmdir()
        raise
    os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes 0700
    try:
        yield tmp
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if reserved:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
