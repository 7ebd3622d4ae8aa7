"""The micro workloads on the live kernel, and their comparison with the model.

``avwork`` (workloads/avwork.c) is compiled on demand with gcc into the cache.  For
each mode the live delta (K, N) - (0, N) of every counter is compared with the
same delta of the ``v6.0`` model replaying rmaplab.workloads' trace of that mode:
the baseline program's own VMAs cancel out, the region's cost remains.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pandas as pd

from rmaplab import traces, workloads
from rmaplab.errors import RmaplabError
from rmaplab.measure.run import Condition
from rmaplab.paths import cache_dir

COMPARED = ("anon_vma_fork", "anon_vma_prepare", "avc_fork", "avc_clone", "avc_prepare",
            "vma_alloc", "mm_forks")
MODES = tuple(workloads.WORKLOADS)


def source(name: str = "avwork") -> bytes:
    """The C source of one of the package's workloads (rmaplab/measure/workloads/NAME.c)."""
    return resources.files("rmaplab.measure").joinpath(f"workloads/{name}.c").read_bytes()


def binary(name: str = "avwork", static: bool = False) -> Path:
    """A workload compiled from the package's source (cached by the source's hash)."""
    src = source(name)
    digest = hashlib.sha256(src + (b"static" if static else b"")).hexdigest()[:12]
    exe = cache_dir() / f"{name}-{digest}" / name
    if exe.exists():
        return exe
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RmaplabError(f"gcc not found (needed to build {name}.c)",
                           hint="apt-get install gcc libc6-dev")
    exe.parent.mkdir(parents=True, exist_ok=True)
    c_file = exe.parent / f"{name}.c"
    c_file.write_bytes(src)
    flags = ["-O2", "-Wall", *(["-static"] if static else [])]
    proc = subprocess.run([gcc, *flags, "-o", str(exe), str(c_file)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RmaplabError(f"gcc failed on {name}.c: {proc.stderr.strip()[-400:]}",
                           hint="a static link needs libc6-dev (libc.a)" if static else None)
    return exe


def label(mode: str, k: int, n: int) -> str:
    return f"{mode}:{k}:{n}"


def conditions(k: int, n: int, modes=MODES) -> list[Condition]:
    exe = str(binary())
    out = []
    for mode in modes:
        if mode not in workloads.WORKLOADS:
            raise RmaplabError(f"unknown workload {mode!r}", hint="one of: " + ", ".join(MODES))
        for kk in (k, 0):
            out.append(Condition(label(mode, kk, n), [exe, mode, str(kk), str(n)]))
    return out


def model_delta(mode: str, k: int, n: int, policy: str = "v6.0", merge_rule: str = "uncowed",
                counters: tuple[str, ...] = COMPARED, exit_at_end: bool = False
                ) -> dict[str, int]:
    """The model's (K, N) - (0, N) difference.  ``exit_at_end`` adds the program's own exit
    (pid 1), which the traces leave out: needed to compare frees."""
    make = workloads.WORKLOADS[mode]
    tail = [{"op": "exit", "pid": 1}] if exit_at_end else []
    full, base = (traces.replay(workloads.numbered(make(kk, n) + tail), policy=policy,
                                merge_rule=merge_rule, check="off").counters
                  for kk in (k, 0))
    return {c: full[c] - base[c] for c in counters}


def compare(runs: pd.DataFrame, k: int, n: int, modes=MODES) -> pd.DataFrame:
    """One row per (mode, counter): live delta, model delta, whether they agree exactly.

    ``runs``: runs.csv of a micro campaign (labels ``mode:K:N``).  Repeated runs of one
    condition must agree; ``repeat_spread`` reports it when they do not.
    """
    good = runs[(~runs["warmup"].astype(bool)) & (~runs["failed"].astype(bool))]
    rows = []
    for mode in modes:
        full = good[good["label"] == label(mode, k, n)]
        base = good[good["label"] == label(mode, 0, n)]
        if full.empty or base.empty:
            raise RmaplabError(f"no successful runs of {mode} with K={k} and K=0, N={n}")
        predicted = model_delta(mode, k, n)
        for counter in COMPARED:
            live = int(full[counter].median()) - int(base[counter].median())
            spread = int(full[counter].max() - full[counter].min()
                         + base[counter].max() - base[counter].min())
            rows.append({"mode": mode, "counter": counter, "live": live,
                         "model": predicted[counter], "match": live == predicted[counter],
                         "repeat_spread": spread})
    return pd.DataFrame(rows)
