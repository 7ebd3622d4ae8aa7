"""The C interpreter (interp.c): build it, write programs for it, read what it reports.

A difftest program is an event trace (rmaplab.traces) whose first event spawns
process 1, the interpreter's first worker; :func:`encode` turns the rest into the
interpreter's line format.  The worker is a fresh exec of a freestanding static
binary, so its own VMAs are its ELF segments, the stack, the kernel's special
mappings and the command area; it writes to each private writable one before the
counting window opens and reports /proc/self/smaps.  :func:`prelude` turns that
report into trace events, so the model starts from the same address space as the
kernel: every process of the program copies these VMAs at fork too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rmaplab.errors import RmaplabError
from rmaplab.measure import cc
from rmaplab.model.structs import PAGE_SIZE

# The program region (interp.c REGION_LO/HI): below UML's 512 GiB user address space,
# far from the binary (4 MiB), the command area (60 GiB) and the stack.
REGION_LO = 0x10_0000_0000
REGION_HI = 0x70_0000_0000
# Pages of each memfd that backs the program's file mappings (sparse: costs nothing).
FILE_PAGES = 1 << 18

CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-static", "-nostdlib", "-ffreestanding",
          "-fno-stack-protector", "-fno-pie", "-no-pie", "-fno-asynchronous-unwind-tables",
          "-Wl,-z,norelro", "-Wl,-z,noexecstack", "-Wl,--build-id=none")
ENCODED_OPS = ("fork", "exit", "mmap", "munmap", "mprotect", "madvise", "mremap", "touch")

Event = dict[str, Any]


def source() -> bytes:
    return resources.files("rmaplab.difftest").joinpath("interp.c").read_bytes()


def binary() -> Path:
    """The interpreter, compiled from the package's source into the cache."""
    return cc.build("interp", source(), CFLAGS, "the difftest interpreter")


# ------------------------------------------------------------------ programs
@dataclass(frozen=True)
class Program:
    """A trace in the interpreter's format: ``text``, and how its lines map back."""

    text: str
    slots: dict[int, int]          # trace pid -> interpreter process slot
    events: list[int]              # program line -> index of the trace event


def _prot(prot: str) -> str:
    return prot or "-"


def encode(events: list[Event]) -> Program:
    """The interpreter program for a difftest trace (spawn of pid 1, then the ops it runs)."""
    if not events or events[0]["op"] != "spawn":
        raise RmaplabError("a difftest program starts with the spawn of its first process")
    slots = {events[0]["pid"]: 0}
    files: dict[str, int] = {}
    lines: list[str] = []
    where: list[int] = []
    for i, ev in enumerate(events[1:], 1):
        op = ev["op"]
        if op not in ENCODED_OPS:
            raise RmaplabError(f"event {i}: the interpreter does not run {op!r}",
                               hint="ops: " + ", ".join(ENCODED_OPS))
        if ev["pid"] not in slots:
            raise RmaplabError(f"event {i}: no process {ev['pid']}")
        slot = slots[ev["pid"]]
        if op == "fork":
            slots[ev["child"]] = len(slots)
            line = f"fork {slot} {slots[ev['child']]}"
        elif op == "exit":
            line = f"exit {slot}"
        elif op == "touch":
            line = f"touch {slot} {ev['addr']:#x} {'w' if ev['write'] else 'r'}"
        else:
            line = f"{op} {slot} {ev['start']:#x} {ev['end']:#x}"
            if op == "mmap":
                if ev.get("shared") or ev.get("flags"):
                    raise RmaplabError(f"event {i}: the interpreter maps private memory only")
                if ev.get("file") is None:
                    line += f" {_prot(ev['prot'])} - 0"
                else:
                    index = files.setdefault(ev["file"], len(files))
                    if ev["pgoff"] + (ev["end"] - ev["start"]) // PAGE_SIZE > FILE_PAGES:
                        raise RmaplabError(f"event {i}: pgoff beyond the {FILE_PAGES}-page file")
                    line += f" {_prot(ev['prot'])} {index} {ev['pgoff']}"
                if ev.get("stack"):
                    line += " stack"                # MAP_STACK
            elif op == "mprotect":
                line += f" {_prot(ev['prot'])}"
            elif op == "madvise":
                line += f" {ev['advice']}"
            elif op == "mremap":
                line += f" {ev['new_start']:#x} {ev['new_end']:#x}"
        lines.append(line)
        where.append(i)
    header = ["rmaplab-interp 1", f"files {len(files)} {FILE_PAGES}"]
    return Program("\n".join([*header, *lines]) + "\n", slots, where)


_PROGRAM_LINE = re.compile(r"interp: [^:]*:(\d+): (.*)")


def trace_error(message: str, program: Program) -> str:
    """An interpreter error that names the trace event instead of the program line."""
    m = _PROGRAM_LINE.match(message)
    header = 2                              # "rmaplab-interp 1" and "files N PAGES"
    if m and header < int(m[1]) <= header + len(program.events):
        return f"event {program.events[int(m[1]) - header - 1]}: {m[2]}"
    return message


# ------------------------------------------------------------------ output
@dataclass(frozen=True)
class Mapping:
    """One VMA of the first worker at the start of the counting window (from smaps)."""

    start: int
    end: int
    perms: str
    offset: int
    path: str
    anonymous_kb: int
    vm_flags: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    mappings: list[Mapping]
    counts: dict[str, int] | None    # counters-file deltas, when the interpreter read one
    events: int


_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+\s*(.*)$")


def parse_smaps(text: str, source: str = "<smaps>") -> list[Mapping]:
    out: list[Mapping] = []
    current: dict[str, Any] | None = None
    for i, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            if current is not None:
                out.append(Mapping(**current))
            current = {"start": int(m[1], 16), "end": int(m[2], 16), "perms": m[3],
                       "offset": int(m[4], 16), "path": m[5].strip(), "anonymous_kb": 0,
                       "vm_flags": ()}
        elif current is None:
            raise RmaplabError("smaps does not start with a mapping line", path=source, line=i)
        elif line.startswith("Anonymous:"):
            current["anonymous_kb"] = int(line.split()[1])
        elif line.startswith("VmFlags:"):
            current["vm_flags"] = tuple(line.split()[1:])
    if current is not None:
        out.append(Mapping(**current))
    return out


def parse_output(stdout: str, source: str = "<interp>") -> Report:
    """What the interpreter printed: its smaps at window start, counts, events run.

    Lines before the header and after "ok" are ignored (a guest's console may add some).
    """
    lines = stdout.splitlines()
    if "rmaplab-interp 1" not in lines:
        raise RmaplabError("not the output of the difftest interpreter", path=source, line=1)
    lines = lines[lines.index("rmaplab-interp 1"):]
    if "ok" in lines:
        lines = lines[:lines.index("ok") + 1]
    try:
        begin, end = lines.index("smaps-begin"), lines.index("smaps-end")
    except ValueError:
        raise RmaplabError("interpreter output has no smaps section", path=source) from None
    mappings = parse_smaps("\n".join(lines[begin + 1:end]), source)
    counts = None
    events = None
    for n, line in enumerate(lines[end + 1:], end + 2):
        if line.startswith("counts "):
            counts = {k: int(v) for k, v in json.loads(line[7:]).items()}
        elif line.startswith("events "):
            events = int(line[7:])
        elif line != "ok":
            raise RmaplabError(f"unexpected interpreter output {line[:60]!r}", path=source,
                               line=n)
    if events is None or lines[-1] != "ok":
        raise RmaplabError("interpreter output is truncated", path=source)
    return Report(mappings, counts, events)


# ------------------------------------------------------------------ the model's prelude
# VmFlags (fs/proc/task_mmu.c show_smap_vma_flags) the prelude understands: access and
# may-bits, accounting, soft-dirty, and the special-mapping bits of the vdso and vvar.
_PLAIN_FLAGS = {"rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "ac", "sd", "dd", "nr", "gd",
                "pf", "io", "de", "mm"}
SPECIAL_FLAGS = {"pf", "io", "de", "mm"}


def prelude(mappings: list[Mapping], pid: int = 1) -> list[Event]:
    """Trace events that build the worker's address space at window start in the model.

    Every private writable mapping holds anonymous pages (the worker wrote to it), so
    it gets one write; anything else holding anonymous memory, or an unexpected VMA
    flag, means the interpreter's footprint is not what this function assumes.
    """
    maps: list[Event] = [{"op": "spawn", "pid": pid}]
    touches: list[Event] = []
    for m in mappings:
        if m.path == "[vsyscall]":
            continue                # the gate area: not a VMA of the mm, never copied
        unknown = set(m.vm_flags) - _PLAIN_FLAGS
        if unknown:
            raise RmaplabError(f"interpreter VMA {m.start:#x}-{m.end:#x} {m.path} has VmFlags "
                               f"{' '.join(sorted(unknown))} the model prelude does not handle")
        prot = "".join(c for c in m.perms[:3] if c != "-")
        shared = m.perms[3] == "s"
        flags = []
        if "gd" in m.vm_flags:
            flags.append("growsdown")
        if "nr" in m.vm_flags:
            flags.append("noreserve")
        if SPECIAL_FLAGS & set(m.vm_flags):
            flags.append("special")
        named_file = m.path and not m.path.startswith("[")
        ev: Event = {"op": "mmap", "pid": pid, "start": m.start, "end": m.end, "prot": prot,
                     "file": m.path if named_file else None,
                     "pgoff": m.offset // PAGE_SIZE if named_file else 0,
                     "shared": shared, "flags": flags}
        maps.append(ev)
        writable_private = "w" in prot and not shared
        if writable_private != (m.anonymous_kb > 0):
            raise RmaplabError(f"interpreter VMA {m.start:#x}-{m.end:#x} {m.path or '[anon]'} "
                               f"({m.perms}) has {m.anonymous_kb} kB anonymous memory: the "
                               "worker should have written to exactly its private writable "
                               "VMAs")
        if writable_private:
            touches.append({"op": "touch", "pid": pid, "addr": m.start, "write": True})
    for ev in maps[1:]:
        if ev["end"] > REGION_LO and ev["start"] < REGION_HI:
            raise RmaplabError(f"interpreter VMA {ev['start']:#x}-{ev['end']:#x} lies in the "
                               "program region")
    return maps + touches


__all__ = ["FILE_PAGES", "REGION_HI", "REGION_LO", "Mapping", "Program", "Report", "binary",
           "encode", "parse_output", "parse_smaps", "prelude", "source", "trace_error"]
