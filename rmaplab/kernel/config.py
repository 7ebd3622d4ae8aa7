"""The guest kernel's configuration: ``make ARCH=um defconfig`` + ``uml.config``.

``uml.config`` (next to this module) is a Kconfig fragment: what the guest needs
(hostfs, proc, sysfs, tmpfs, devtmpfs, ELF and #! binaries, SLUB_STATS, 64 KiB
kernel stacks) and what it does not (modules, networking, block devices, sound,
cgroups, debug info).  It is merged with the kernel's own
``scripts/kconfig/merge_config.sh`` and completed by ``olddefconfig``; every option
the fragment names must survive with the value asked for.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from importlib import resources
from pathlib import Path

from rmaplab import atomic
from rmaplab.errors import RmaplabError

OPTION = re.compile(r"^(CONFIG_\w+)=(.*)$|^# (CONFIG_\w+) is not set$")
STAMP = ".rmaplab-config"


def fragment() -> bytes:
    return resources.files("rmaplab.kernel").joinpath("uml.config").read_bytes()


def fragment_path() -> Path:
    return Path(str(resources.files("rmaplab.kernel").joinpath("uml.config")))


def parse(text: str, source: str) -> dict[str, str]:
    """Options of a .config or fragment; ``n`` for "is not set".  Other lines must be comments."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        m = OPTION.match(line)
        if m:
            if m.group(1):
                out[m.group(1)] = m.group(2)
            else:
                out[m.group(3)] = "n"
        elif line and not line.startswith("#"):
            raise RmaplabError(f"not a Kconfig line: {line!r}", path=source, line=n)
    return out


def stamp(version: str) -> str:
    return hashlib.sha256(fragment() + version.encode()).hexdigest()


def make_argv(obj: Path, *targets: str) -> list[str]:
    return ["make", "ARCH=um", f"O={obj}", *targets]


def write(tree: Path, obj: Path, version: str, log_file: Path) -> bool:
    """Write ``obj/.config``.  Returns False if the current one was made the same way."""
    want = stamp(version)
    if (obj / ".config").exists() and (obj / STAMP).exists() \
            and (obj / STAMP).read_text().strip() == want:
        return False
    obj.mkdir(parents=True, exist_ok=True)
    requested = parse(fragment().decode(), str(fragment_path()))
    steps = [
        make_argv(obj, "defconfig"),
        ["scripts/kconfig/merge_config.sh", "-m", "-O", str(obj), str(obj / ".config"),
         str(fragment_path())],
        make_argv(obj, "olddefconfig"),
    ]
    with open(log_file, "ab") as log:
        for argv in steps:
            proc = subprocess.run(argv, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise RmaplabError(f"{' '.join(argv)} failed (status {proc.returncode})",
                                   hint=f"log: {log_file}")
    got = parse((obj / ".config").read_text(), str(obj / ".config"))
    wrong = [f"{k}={v} (got {got.get(k, 'n')})" for k, v in requested.items()
             if got.get(k, "n") != v]
    if wrong:
        raise RmaplabError("olddefconfig dropped options of uml.config: " + ", ".join(wrong),
                           path=fragment_path(), hint="a dependency is missing")
    atomic.write_text(obj / STAMP, want + "\n")
    return True
