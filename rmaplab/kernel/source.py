"""The kernel source and the host tools: Debian's linux-source-6.12, unpacked once.

The tarball (``/usr/src/linux-source-6.12.tar.xz``, package ``linux-source-6.12``) is
unpacked into ``$RMAPLAB_CACHE/uml/linux-<package version>/``: into a temporary
sibling first, renamed when tar has finished, so an interrupted unpack is never
mistaken for a tree.  Missing Debian packages are installed with apt-get when
running as root; otherwise the error names them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from rmaplab.errors import RmaplabError
from rmaplab.measure.kbuild import SOURCE_PACKAGE, TARBALL
from rmaplab.paths import cache_dir

# What `kernel build` needs: the source, compilers and kbuild's tools, a static
# busybox and static libc for the guest, GNU patch for the series, perl for checkpatch.
PACKAGES = ("linux-source-6.12", "busybox-static", "gcc", "libc6-dev", "make", "flex",
            "bison", "bc", "libelf-dev", "patch", "perl", "xz-utils")
TOOLS = {"gcc": "gcc", "make": "make", "flex": "flex", "bison": "bison", "bc": "bc",
         "patch": "patch", "perl": "perl", "xz": "xz-utils", "tar": "tar"}
BUSYBOX = Path("/bin/busybox")
STATIC_LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.a")

Log = Callable[[str], None]


def uml_dir() -> Path:
    """``$RMAPLAB_CACHE/uml``: everything this package writes outside the repository."""
    return cache_dir() / "uml"


def missing_packages() -> list[str]:
    """Debian packages of PACKAGES that dpkg does not report as installed."""
    if shutil.which("dpkg-query") is None:
        return []
    missing = []
    for pkg in PACKAGES:
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg],
                              capture_output=True, text=True)
        if "ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def apt_install(packages: list[str], log: Log) -> None:
    """Install Debian packages with apt-get (root only); a clear error otherwise."""
    if not packages:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RmaplabError("missing packages: " + " ".join(packages),
                           hint="apt-get install " + " ".join(packages))
    log("installing " + " ".join(packages) + " with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RmaplabError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-300:]}")


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a PT_INTERP program header (statically linked)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:         # 64-bit ELF only
            return False
        order = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[32:40], order)
        phentsize = int.from_bytes(head[54:56], order)
        phnum = int.from_bytes(head[56:58], order)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(int.from_bytes(table[i:i + 4], order) != pt_interp
               for i in range(0, len(table), phentsize))


def ensure_tools(log: Log) -> None:
    """Install what is missing (apt, as root), then check every tool is really there."""
    apt_install(missing_packages(), log)
    absent = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not TARBALL.exists():
        absent.append(SOURCE_PACKAGE)
    if not STATIC_LIBC.exists():
        absent.append("libc6-dev")
    if not BUSYBOX.exists() or not is_static_elf(BUSYBOX):
        absent.append("busybox-static")
    if absent:
        raise RmaplabError("missing: " + " ".join(absent),
                           hint="apt-get install " + " ".join(absent))


def package_version() -> str:
    """The linux-source package's version (dpkg), else the tarball's size and mtime."""
    if shutil.which("dpkg-query"):
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", SOURCE_PACKAGE],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    st = TARBALL.stat()
    return f"tarball-{st.st_size}-{int(st.st_mtime)}"


def kernel_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from the tree's top Makefile."""
    head = (tree / "Makefile").read_text(errors="replace")[:2000]
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL) = (\d+)", head, re.M))
    return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"


def tree_dir(version: str) -> Path:
    return uml_dir() / ("linux-" + re.sub(r"[^A-Za-z0-9.+-]", "_", version))


def ensure_tree(log: Log) -> tuple[Path, str]:
    """The unpacked source tree for the installed package version, unpacking if needed."""
    version = package_version()
    tree = tree_dir(version)
    if (tree / "Makefile").exists():
        return tree, version
    tree.parent.mkdir(parents=True, exist_ok=True)
    for stale in tree.parent.glob(f".{tree.name}.*.unpack"):   # an interrupted unpack
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{tree.name}.", suffix=".unpack"))
    try:
        log(f"unpacking {TARBALL} ({version})")
        proc = subprocess.run(["tar", "-xJf", str(TARBALL), "-C", str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RmaplabError(f"tar failed on {TARBALL}: {proc.stderr.strip()[-300:]}")
        inner = tmp / SOURCE_PACKAGE
        if not (inner / "Makefile").exists():
            raise RmaplabError(f"{TARBALL} does not hold {SOURCE_PACKAGE}/Makefile")
        os.rename(inner, tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree, version
