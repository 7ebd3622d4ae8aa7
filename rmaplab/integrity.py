"""data/raw is immutable: a sha256 manifest is checked before any analysis reads it.

``data/raw/MANIFEST.sha256`` uses ``sha256sum`` format (``<hex>  <path>``, paths
relative to data/raw), so ``cd data/raw && sha256sum -c MANIFEST.sha256`` checks
it without rmaplab.  New measurements are added, never changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.paths import raw_dir

MANIFEST_NAME = "MANIFEST.sha256"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(root: Path | None = None) -> Path:
    return (root or raw_dir()) / MANIFEST_NAME


def read_manifest(root: Path | None = None) -> dict[str, str]:
    path = manifest_path(root)
    if not path.exists():
        raise RmaplabError("raw-data manifest is missing", path=path,
                           hint="restore it from git; it is never regenerated")
    entries: dict[str, str] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise RmaplabError("malformed manifest line (expected '<sha256>  <path>')",
                               path=path, line=i)
        entries[name] = digest
    return entries


def verify(names: list[str] | None = None, root: Path | None = None) -> int:
    """Check files against the manifest (all of them if ``names`` is None).

    Also refuses raw files the manifest does not list: unrecorded data is not
    analysed.  Returns the number of files checked.
    """
    root = root or raw_dir()
    entries = read_manifest(root)
    if names is None:
        on_disk = {str(p.relative_to(root)) for p in root.rglob("*")
                   if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")}
        unlisted = sorted(on_disk - set(entries))
        if unlisted:
            raise RmaplabError(f"{len(unlisted)} raw file(s) not in the manifest, e.g. "
                               f"{unlisted[0]}", path=manifest_path(root),
                               hint="record new measurements with `rmaplab data add`")
        names = sorted(entries)
    for name in names:
        if name not in entries:
            raise RmaplabError("raw file is not in the manifest", path=root / name,
                               hint="record it with `rmaplab data add`")
        path = root / name
        if not path.exists():
            raise RmaplabError("raw file listed in the manifest is missing", path=path)
        if sha256(path) != entries[name]:
            raise RmaplabError("raw file does not match its sha256 in the manifest; refusing "
                               "to analyse modified raw data", path=path,
                               hint="restore it with `git checkout -- data/raw`")
    return len(names)


def raw_path(name: str, root: Path | None = None) -> Path:
    """Path of a raw file, after checking it against the manifest."""
    root = root or raw_dir()
    verify([name], root)
    return root / name


def checked(path: Path) -> Path:
    """``path`` itself; checked against the manifest first if it lies under data/raw/
    (a file of the user's own elsewhere is read as it is)."""
    try:
        rel = Path(path).resolve().relative_to(raw_dir().resolve())
    except ValueError:
        return Path(path)
    return raw_path(str(rel))


def add(paths: list[Path], root: Path | None = None) -> list[str]:
    """Record new raw files in the manifest.  A recorded file may not change."""
    root = (root or raw_dir()).resolve()
    entries = read_manifest(root) if manifest_path(root).exists() else {}
    added = []
    for p in paths:
        p = Path(p).resolve()
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                name = str(f.relative_to(root))
            except ValueError:
                raise RmaplabError("not under data/raw", path=f) from None
            if f.name == MANIFEST_NAME or f.name.startswith("."):
                continue
            digest = sha256(f)
            if name in entries and entries[name] != digest:
                raise RmaplabError("already recorded with a different sha256: raw data is "
                                   "immutable; write a new file instead", path=f)
            if name not in entries:
                entries[name] = digest
                added.append(name)
    text = "".join(f"{entries[n]}  {n}\n" for n in sorted(entries))
    atomic.write_text(manifest_path(root), text)
    return added
