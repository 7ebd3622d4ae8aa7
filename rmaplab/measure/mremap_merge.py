"""Which 6.18.y mremap() merge behaviour the live kernel has: 61f67c230a5e and 3b617fd3d317.

Both Jan 2026 fixes to 879bca0a2c4f's relaxed anonymous merges are in v6.19 and
6.18.8; 6.16 .. 6.18.7 have neither.  They differ from user space in two ways that
perf and /proc/self/maps see without ever freeing an anon_vma a page still points to
(workloads/mremap_merge.c explains the scenarios):

``uaf``   a faulted VMA half-moved (MREMAP_DONTUNMAP) next to an unfaulted one merges
          either way; with 61f67c230a5e the unfaulted VMA takes the anon_vma at the
          merge (an AVC clone), without it a later write there prepares a new anon_vma.
``fork``  a forked child's faulted VMA moved next to an unfaulted one merges only
          without 3b617fd3d317.

Each mode runs twice, the move ``adjacent`` to the unfaulted VMA and ``apart`` from it;
the live adjacent-minus-apart counts must equal the model's under exactly one of the
rules ``uncowed`` (with the fixes), ``uncowed-6.16`` (without) and ``singular`` (before
879bca0a2c4f), and the VMAs the program prints must equal the model's under that rule.  The traces below make the
program's calls at the program's addresses.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from rmaplab import workloads
from rmaplab.errors import RmaplabError
from rmaplab.measure import micro, run
from rmaplab.model.machine import Kernel
from rmaplab.model.observe import vma_state
from rmaplab.paths import raw_dir

PROGRAM = "mremap_merge"
BASE = 0x7E0000000000          # BASE, PAGES, FAR and APART as in mremap_merge.c
PAGES = 32
FAR, APART = 20, 12
PAGE = 4096
MODES = ("uaf", "fork")
TARGETS = ("adjacent", "apart")
RULES = ("uncowed", "uncowed-6.16", "singular")
# Which fix each mode reveals, and the kernels with each rule.
FIX = {"uaf": "61f67c230a5e", "fork": "3b617fd3d317"}
KERNELS = {"uncowed": "v6.19, 6.18.8 and later 6.18.y", "uncowed-6.16": "v6.16 .. 6.18.7",
           "singular": "v3.0 .. v6.15 (no faulted/unfaulted merges at all)"}
COMPARED = micro.COMPARED


def _page(i: int) -> int:
    return BASE + i * PAGE


def events(mode: str, target: str) -> tuple[list[dict], int]:
    """The program's calls as a trace, and the pid whose VMAs it prints."""
    if mode not in MODES or target not in TARGETS:
        raise RmaplabError(f"unknown probe {mode!r}/{target!r}",
                           hint=f"modes {', '.join(MODES)}; targets {', '.join(TARGETS)}")
    to = 4 if target == "adjacent" else APART

    def map_rw(pid, first, count):
        return {"op": "mmap", "pid": pid, "start": _page(first), "end": _page(first + count),
                "prot": "rw"}

    def move(pid, first, count, dest, dontunmap=False):
        return {"op": "mremap", "pid": pid, "start": _page(first),
                "end": _page(first + count), "new_start": _page(dest),
                "new_end": _page(dest + count), "dontunmap": dontunmap}

    def touch(pid, i):
        return {"op": "touch", "pid": pid, "addr": _page(i), "write": True}

    evs = [{"op": "spawn", "pid": 1},
           {"op": "mmap", "pid": 1, "start": BASE, "end": _page(PAGES), "prot": ""}]
    if mode == "uaf":
        evs += [map_rw(1, 4, 6), touch(1, 4), move(1, 4, 6, FAR), map_rw(1, 1, 3),
                move(1, FAR, 3, to, dontunmap=True), touch(1, 1)]
        return evs, 1
    evs += [map_rw(1, 4, 3), touch(1, 4), {"op": "fork", "pid": 1, "child": 2},
            move(2, 4, 3, FAR), map_rw(2, 1, 3), move(2, FAR, 3, to, dontunmap=True)]
    return evs, 2


def model(mode: str, target: str, rule: str) -> tuple[dict[str, int], list[tuple]]:
    """The model's counts and the VMAs of the printing process (first, end, prot)."""
    evs, pid = events(mode, target)
    kernel = Kernel("v6.0", merge_rule=rule, check="full")
    for _, ev in workloads.numbered(evs):
        kernel.apply(ev)
    # Without the fixes the merged VMA maps a page its anon_vma_chain does not reach
    # (page-unreachable: that is the bug); what the probe must never do is free an
    # anon_vma a page points to, on any kernel it may run on.
    freed = [v for v in kernel.violations if v.invariant == "page-mapping-freed"]
    if freed:
        raise RmaplabError(f"the {mode}/{target} probe frees a mapped anon_vma under {rule} "
                           f"(event {freed[0].event}); it must not run on such a kernel")
    vmas = [((r["start"] - BASE) // PAGE, (r["end"] - BASE) // PAGE, r["prot"])
            for r in vma_state(kernel.mms[pid]) if BASE <= r["start"] < _page(PAGES)]
    return kernel.counters.as_dict(), vmas


def parse_vmas(output: bytes) -> list[tuple]:
    """The program's 'vma FIRST END PERMS' lines as (first, end, prot in trace spelling)."""
    out = []
    for line in output.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "vma":
            prot = "".join(c for c in parts[3][:3] if c != "-")
            out.append((int(parts[1]), int(parts[2]), prot))
    return out


def label(mode: str, target: str) -> str:
    return f"{mode}:{target}"


def conditions() -> list[run.Condition]:
    exe = str(micro.binary(PROGRAM, static=True))
    return [run.Condition(label(m, t), [exe, m, t]) for m in MODES for t in TARGETS]


def compare(runs: pd.DataFrame, outputs: dict[str, list[bytes]]) -> tuple[pd.DataFrame, dict]:
    """Live deltas and printed VMAs against each rule; which rule the kernel follows.

    ``runs``: runs.csv rows of a campaign over :func:`conditions`; ``outputs``: what the
    measured runs of each label printed.  Returns one row per (mode, quantity) and a
    verdict {"rule", "kernels", "fixes"}; ``rule`` is None when no rule explains every row.
    """
    good = runs[(~runs["warmup"].astype(bool)) & (~runs["failed"].astype(bool))]
    rows = []
    for mode in MODES:
        live = {}
        for target in TARGETS:
            sel = good[good["label"] == label(mode, target)]
            if sel.empty:
                raise RmaplabError(f"no successful runs of {label(mode, target)}")
            if (sel[list(COMPARED)].nunique() > 1).any():
                raise RmaplabError(f"repeated runs of {label(mode, target)} disagree",
                                   hint="the counts of this program are deterministic; "
                                        "something else ran under perf")
            live[target] = sel.iloc[0]
        predicted = {rule: {t: model(mode, t, rule) for t in TARGETS} for rule in RULES}
        for counter in COMPARED:
            row = {"mode": mode, "quantity": counter,
                   "live": int(live["adjacent"][counter]) - int(live["apart"][counter])}
            for rule in RULES:
                pred = predicted[rule]
                row[rule] = pred["adjacent"][0][counter] - pred["apart"][0][counter]
            rows.append(row)
        printed = {tuple(parse_vmas(o)) for o in outputs[label(mode, "adjacent")]}
        if len(printed) != 1:
            raise RmaplabError(f"runs of {label(mode, 'adjacent')} printed different VMAs")
        row = {"mode": mode, "quantity": "vmas (adjacent)", "live": _fmt(printed.pop())}
        for rule in RULES:
            row[rule] = _fmt(predicted[rule]["adjacent"][1])
        rows.append(row)
    table = pd.DataFrame(rows)
    matches = {rule: bool((table["live"] == table[rule]).all()) for rule in RULES}
    fitting = [rule for rule, ok in matches.items() if ok]
    rule = fitting[0] if len(fitting) == 1 else None
    relaxed = rule in ("uncowed", "uncowed-6.16")
    verdict = {"rule": rule, "kernels": KERNELS.get(rule),
               "fixes": {FIX[m]: rule == "uncowed" for m in MODES} if relaxed else None,
               "matches": matches}
    return table, verdict


def expected_rule(release: str) -> str | None:
    """The rule a mainline or stable kernel of this release runs (vendor backports aside)."""
    parts = [int(x) for x in re.findall(r"\d+", release.split("-")[0])[:3]]
    if len(parts) < 2:
        return None
    version = tuple(parts + [0] * (3 - len(parts)))
    if version < (6, 16, 0):
        return "singular"
    if version < (6, 18, 8):
        return "uncowed-6.16"
    return "uncowed"


def _fmt(vmas) -> str:
    return " ".join(f"[{a},{b}){p or '-'}" for a, b, p in vmas)


def probe(runs: int = 2, record: bool = True, log: Callable[[str], None] | None = None
          ) -> tuple[pd.DataFrame, dict, Path | None]:
    """Run the probe on this kernel under perf; record it under data/raw/mremap/."""
    src = micro.source(PROGRAM)
    measured, where = run.campaign(
        conditions(), runs=runs, label="mremap-merge", out_root=raw_dir() / "mremap",
        record=record, log=log,
        extra_meta={"program": f"rmaplab/measure/workloads/{PROGRAM}.c",
                    "program_sha256": hashlib.sha256(src).hexdigest(),
                    "compile": "gcc -O2 -Wall -static"})
    frame = pd.DataFrame([r.row() for r in measured])
    outputs: dict[str, list[bytes]] = {}
    for r in measured:
        if not r.warmup and not r.failed:
            outputs.setdefault(r.label, []).append(r.output)
    table, verdict = compare(frame, outputs)
    return table, verdict, where


def load(directory: Path) -> tuple[pd.DataFrame, dict]:
    """A recorded probe (checked against the raw-data manifest), compared again."""
    from rmaplab import integrity
    from rmaplab.measure import data

    frame, _ = data.load(directory)
    rel = directory.resolve().relative_to(raw_dir().resolve())
    outputs: dict[str, list[bytes]] = {}
    for _, r in frame.iterrows():
        if not r["warmup"] and not r["failed"]:
            path = integrity.raw_path(str(rel / f"run-{int(r['order']):03d}.log.gz"))
            outputs.setdefault(r["label"], []).append(gzip.decompress(path.read_bytes()))
    return compare(frame, outputs)


__all__ = ["MODES", "RULES", "compare", "conditions", "events", "expected_rule", "load", "model",
           "parse_vmas", "probe"]
