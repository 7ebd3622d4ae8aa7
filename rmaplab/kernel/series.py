"""The project's patch series (``rmaplab/kernel/patches/000N-*.patch``) and its application.

The series is applied to the unpacked tree with GNU patch (no fuzz).  A copy of what
is applied is kept next to the tree (``<tree>.applied/``), so that when the series
changes the old one can be reversed exactly and the new one applied.  Files whose
content ends up unchanged get their old modification time back, so make rebuilds
only the objects a changed patch really affects.  A ``.dirty`` marker is written
while the tree is between series; a tree left dirty by an interrupted run is
reported, never built.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from importlib import resources
from pathlib import Path

from rmaplab import atomic
from rmaplab.errors import RmaplabError

PATCH_NAME = re.compile(r"^\d{4}-[A-Za-z0-9._-]+\.patch$")


@dataclass(frozen=True)
class Patch:
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def subject(self) -> str:
        """The Subject header, unfolded, without its [PATCH] prefix."""
        header = BytesHeaderParser().parsebytes(self.data).get("Subject", "")
        return re.sub(r"^\[PATCH[^\]]*\]\s*", "", " ".join(str(header).split()))

    def files(self) -> set[str]:
        """Paths (relative to the tree) the patch creates, changes or deletes."""
        out = set()
        for m in re.finditer(rb"^(?:---|\+\+\+) (?:[ab]/)?(\S+)", self.data, re.M):
            path = m.group(1).decode()
            if path != "/dev/null":
                out.add(path)
        return out


def patches_dir() -> Path:
    return Path(str(resources.files("rmaplab.kernel").joinpath("patches")))


def load(directory: Path | None = None) -> list[Patch]:
    """The series in order; a file that is not ``NNNN-name.patch`` or is empty is an error."""
    directory = directory or patches_dir()
    files = sorted(p for p in directory.iterdir() if p.suffix == ".patch")
    if not files:
        raise RmaplabError("no patches found", path=directory)
    series = []
    for i, path in enumerate(files, 1):
        if not PATCH_NAME.match(path.name) or int(path.name[:4]) != i:
            raise RmaplabError(f"patch {i} is named {path.name!r}; expected {i:04d}-name.patch",
                               path=path)
        data = path.read_bytes()
        patch = Patch(path.name, data)
        if not patch.subject or not patch.files():
            raise RmaplabError("not a git format-patch file (no Subject or no diff)", path=path)
        series.append(patch)
    return series


def applied_dir(tree: Path) -> Path:
    return tree.parent / (tree.name + ".applied")


def applied(tree: Path) -> list[Patch]:
    d = applied_dir(tree)
    if (d / ".dirty").exists():
        raise RmaplabError("the source tree was left half-patched by an interrupted run",
                           path=tree, hint=f"delete {tree} and {d} and build again")
    if not d.exists():
        return []
    return [Patch(p.name, p.read_bytes()) for p in sorted(d.glob("*.patch"))]


def _run_patch(tree: Path, patch: Patch, reverse: bool) -> None:
    argv = ["patch", "-p1", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "--silent"]
    if reverse:
        argv.append("--reverse")
    proc = subprocess.run(argv, cwd=tree, input=patch.data, capture_output=True)
    if proc.returncode != 0:
        how = "reverse" if reverse else "apply"
        out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        raise RmaplabError(f"cannot {how} {patch.name}: {out[-400:]}", path=tree)


def _fingerprint(tree: Path, paths: set[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for rel in paths:
        f = tree / rel
        if f.is_file():
            out[rel] = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


def sync(tree: Path, wanted: list[Patch]) -> bool:
    """Make the tree carry exactly ``wanted``.  Returns False if it already did."""
    old = applied(tree)
    if [p.data for p in old] == [p.data for p in wanted]:
        return False
    d = applied_dir(tree)
    d.mkdir(parents=True, exist_ok=True)
    touched = set().union(*(p.files() for p in old + wanted))
    before = _fingerprint(tree, touched)
    atomic.write_text(d / ".dirty", "series being changed\n")
    for patch in reversed(old):
        _run_patch(tree, patch, reverse=True)
        (d / patch.name).unlink()
    for patch in wanted:
        _run_patch(tree, patch, reverse=False)
        atomic.write_bytes(d / patch.name, patch.data)
    for rel, (digest, _) in _fingerprint(tree, touched).items():
        if rel in before and before[rel][0] == digest:
            f = tree / rel
            os.utime(f, ns=(f.stat().st_atime_ns, before[rel][1]))
    (d / ".dirty").unlink()
    return True


def reset(tree: Path) -> None:
    """Forget a tree and its series state (the next build unpacks a fresh one)."""
    shutil.rmtree(applied_dir(tree), ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
