"""``rmaplab trace``: record a real workload with perf and turn it into an event trace.

What is recorded (``perf record``, inherited by every child):

* syscalls mmap, munmap, mprotect, brk, madvise, mremap, entry and exit (the exit
  gives mmap's and mremap's address, brk's new end, and whether the call worked);
* task:task_newtask (clone flags tell a fork that copies the mm from vfork,
  posix_spawn and threads), sched:sched_process_exec, sched:sched_process_exit;
* write page faults, user (exceptions:page_fault_user) and kernel-mode on user
  addresses (exceptions:page_fault_kernel: exec's padzero, copy_to_user);
* with ``-d``, PERF_RECORD_MMAP2 side-band records: they name the file of each
  mmap and, at exec, describe what execve maps without any syscall (the binary's
  segments, bss, the interpreter, the stack, vdso/vvar);
* the kmem/task counters of ``rmaplab measure`` as samples, so the live counts of
  the very same run validate the replay.

The converter follows each process's mm: a vfork/posix_spawn child runs in its
parent's mm until it execs (then it is a ``spawn``), a thread in its group's.  Page
faults are reduced on the fly by replaying the trace through the v6.0 model: a
fault is kept only if it lands in a writable private VMA that has no anon_vma yet
(or grows the stack) -- the only faults that can change anon_vma state under any
policy (anon_vma presence does not depend on the reuse rule).  Pages are therefore
not tracked in build replays.  An mmap with MAP_STACK is marked ``"stack": true``
(glibc's posix_spawn maps its child stack so): on this THP kernel it gets
VM_NOHUGEPAGE and stays apart from a faulted anonymous neighbour, so its first write
is kept; madvise MADV_HUGEPAGE/MADV_NOHUGEPAGE are recorded as ``hugepage``/``nohugepage``.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmaplab.errors import RmaplabError
from rmaplab.measure import perf
from rmaplab.model.machine import EventError, Kernel
from rmaplab.traces import align_ranges

if TYPE_CHECKING:
    from rmaplab.model.policies import Policy

CLONE_VM = 0x100
CLONE_THREAD = 0x10000
MAP_SHARED = 0x01
MAP_GROWSDOWN = 0x100
MAP_NORESERVE = 0x4000
MAP_STACK = 0x20000                              # include/uapi/asm-generic/mman-common.h
MADVICE = {4: "dontneed", 10: "dontfork", 11: "dofork", 18: "wipeonfork", 19: "keeponfork",
           14: "hugepage", 15: "nohugepage"}
# Advices that set or clear a vm_flag the trace format has no name for (mm/madvise.c,
# madvise_update_vma): VM_RAND_READ, VM_SEQ_READ, VM_MERGEABLE, VM_DONTDUMP.  Such a call
# splits or merges VMAs on the kernel and not in the replay, so the capture reports it.
FLAG_ADVICES = {1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 12: "MADV_MERGEABLE",
                13: "MADV_UNMERGEABLE", 16: "MADV_DONTDUMP", 17: "MADV_DODUMP"}
PROTS = {0: "", 1: "r", 3: "rw", 5: "rx", 7: "rwx", 2: "w", 6: "wx", 4: "x"}
USER_LIMIT = 0x0000800000000000
SYSCALLS = ("mmap", "munmap", "mprotect", "brk", "madvise", "mremap")
MREMAP_DONTUNMAP = 4                             # include/uapi/linux/mman.h

RECORD_EVENTS: list[tuple[str, str | None]] = [
    *[(f"syscalls:sys_{d}_{s}", None) for s in SYSCALLS for d in ("enter", "exit")],
    ("task:task_newtask", None),
    ("sched:sched_process_exec", None),
    ("sched:sched_process_exit", None),
    ("exceptions:page_fault_user", "error_code & 2"),
    ("exceptions:page_fault_kernel", "error_code & 2"),
    *[(c.event, c.filter) for c in perf.COUNTERS if c.event == perf.KMEM],
]

_SAMPLE = re.compile(r"^\s*(\d+)/(\d+)\s+[\d.]+:\s+([\w:]+):\s?(.*)$")
_MMAP2 = re.compile(
    r"^\s*(\d+)/(\d+)\s+[\d.]+: PERF_RECORD_MMAP2 \d+/\d+: \[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ "
    r"(\S+) ([0-9a-f]+):([0-9a-f]+) (\d+) \d+\]: ([r-])([w-])([x-])([ps]) (.*)$")
_COMM_EXEC = re.compile(r"^\s*(\d+)/(\d+)\s+[\d.]+: PERF_RECORD_COMM exec: ")
_KV = re.compile(r"(\w+)[:=] ?([^\s,]+)")


def record_argv(cmd: list[str], output: Path) -> list[str]:
    argv = [perf.perf_binary(), "record", "-q", "-d", "-m", "16M", "-o", str(output)]
    for event, flt in RECORD_EVENTS:
        argv += ["-e", event]
        if flt:
            argv += ["--filter", flt]
    return [*argv, "--", *cmd]


def script_argv(data: Path) -> list[str]:
    return [perf.perf_binary(), "script", "-i", str(data), "--show-mmap-events",
            "--show-task-events", "-F", "tid,pid,time,event,trace"]


def _args(text: str) -> dict[str, int]:
    out = {}
    for k, v in _KV.findall(text):
        try:
            out[k] = int(v, 0)
        except ValueError:
            continue
    return out


@dataclass
class Converter:
    """perf script lines in, trace events out (reduced through a v6.0 model)."""

    reduce: bool = True
    kernel: Kernel = field(default_factory=lambda: Kernel("v6.0", check="off"))
    owner: dict[int, int] = field(default_factory=dict)      # pid -> pid whose mm it uses
    own: set[int] = field(default_factory=set)               # pids with their own mm
    pending: dict[int, tuple[str, dict, str | None]] = field(default_factory=dict)
    image: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    live: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    # Events for what execve sets up before begin_new_exec() (the new stack and its
    # argument pages): perf enables counting there (perf_event_exec), so for the traced
    # command itself the live counts do not include what these events allocate.
    preamble: int = 0

    def mm_of(self, pid: int) -> int | None:
        p = self.owner.get(pid, pid)
        return p if p in self.own else None

    def emit(self, ev: dict[str, Any], out: list[dict[str, Any]]) -> None:
        if self.reduce and ev["op"] == "touch" and not self._relevant(ev):
            self.stats["faults_dropped"] += 1
            return
        # The model sees what a loaded trace holds: ends page-aligned as the kernel aligns
        # lengths (an unaligned anonymous end would keep the next mmap from merging with it).
        align_ranges(ev)
        try:
            self.kernel.apply(ev)
        except EventError as e:
            self.stats["events_skipped"] += 1
            if len(self.problems) < 20:
                self.problems.append(f"{ev['op']} pid {ev['pid']}: {e}")
            return
        self.stats["events_" + ev["op"]] += 1
        out.append(ev)

    def _relevant(self, ev: dict[str, Any]) -> bool:
        mm = self.kernel.mms.get(ev["pid"])
        if mm is None:
            return False
        vma = self.kernel.find_vma(mm, ev["addr"])
        if vma is None:
            return self.kernel._stack_below(mm, ev["addr"]) is not None
        from rmaplab.model.structs import VM_SHARED, VM_WRITE

        return vma.anon_vma is None and bool(vma.flags & VM_WRITE) and not vma.flags & VM_SHARED

    def feed(self, line: str, out: list[dict[str, Any]]) -> None:
        m = _SAMPLE.match(line)
        if m is None:
            if "PERF_RECORD_MMAP2" in line:
                self._mmap2(line)
            elif _COMM_EXEC.match(line):
                pid = int(_COMM_EXEC.match(line).group(1))
                self.image[pid] = []
            return
        pid, tid, event, rest = int(m[1]), int(m[2]), m[3], m[4]
        if event.startswith("exceptions:page_fault"):
            a = _args(rest)
            addr = a.get("address", USER_LIMIT)
            if addr >= USER_LIMIT:
                return
            self.stats["faults"] += 1
            ev = {"op": "touch", "pid": None, "addr": addr, "write": True}
            if pid in self.image:                    # exec in progress: part of the new image
                ev["pid"] = pid
                self.image[pid].append(ev)
                return
            owner = self.mm_of(pid)
            if owner is not None:
                ev["pid"] = owner
                self.emit(ev, out)
            return
        if event.startswith("syscalls:sys_enter_"):
            self.pending[tid] = (event[19:], _args(rest), None)
            return
        if event.startswith("syscalls:sys_exit_"):
            self._syscall_exit(pid, tid, event[18:], rest, out)
            return
        if event == "kmem:kmem_cache_alloc":
            self._count_alloc(rest)
            return
        if event == "task:task_newtask":
            fields = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
            child = int(fields["pid"])
            flags = int(fields["clone_flags"], 16)    # printed as %lx, without 0x
            self.live["forks"] += 1
            if flags & CLONE_VM:
                if not flags & CLONE_THREAD:
                    self.owner[child] = self.owner.get(pid, pid)
                return
            self.live["mm_forks"] += 1
            parent = self.mm_of(pid)
            if parent is None:
                self.stats["forks_of_unknown"] += 1
                return
            self.own.add(child)
            self.owner.pop(child, None)
            self.emit({"op": "fork", "pid": parent, "child": child}, out)
            return
        if event == "sched:sched_process_exec":
            self.live["execs"] += 1
            m_file = re.search(r"filename=(\S+)", rest)
            self._exec(pid, out, m_file.group(1).rsplit("/", 1)[-1] if m_file else None)
            return
        if event == "sched:sched_process_exit":
            if "group_dead=true" not in rest:
                return                                # a thread; the mm lives on
            self.owner.pop(pid, None)
            if pid in self.own:
                self.own.discard(pid)
                self.emit({"op": "exit", "pid": pid}, out)

    @staticmethod
    def _elf_map_tails(maps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Re-insert the munmap that elf_map() makes after mapping a binary's first segment.

        load_elf_binary maps the first PT_LOAD with the image's total size, then
        vm_munmap()s everything past the first segment; the MMAP2 record shows the
        total size and no record shows the munmap.  The next segment of the same file
        tells where the first one ends.
        """
        fixed = []
        for i, ev in enumerate(maps):
            fixed.append(ev)
            if ev["op"] != "mmap" or "file" not in ev:
                continue
            nxt = next((m for m in maps[i + 1:] if m["op"] == "mmap"
                        and m.get("file") == ev["file"] and ev["start"] < m["start"] < ev["end"]),
                       None)
            if nxt is not None:
                fixed.append({"op": "munmap", "pid": ev["pid"], "start": nxt["start"],
                              "end": ev["end"]})
        return fixed

    def _exec(self, pid: int, out: list[dict[str, Any]], comm: str | None = None) -> None:
        maps = self._elf_map_tails(self.image.pop(pid, []))
        first = not out
        if pid in self.own:
            self.emit({"op": "exec", "pid": pid, "comm": comm}, out)
        else:
            parent = self.owner.pop(pid, None)
            self.own.add(pid)
            self.emit({"op": "spawn", "pid": pid, "comm": comm, "parent": parent}, out)
        for ev in maps:
            ev["pid"] = pid
            bprm = ev.pop("_bprm", False)
            self.emit(ev, out)
            if first and bprm:
                self.preamble = len(out)

    def _mmap2(self, line: str) -> None:
        m = _MMAP2.match(line)
        if m is None:
            return
        pid, tid = int(m[1]), int(m[2])
        start, length = int(m[3], 16), int(m[4], 16)
        name = m[13].strip()
        ident = None if name in ("//anon", "[stack]", "[heap]") or name.startswith("[") else (
            f"{name}" if m[8] == "0" else f"{int(m[6], 16)}:{int(m[7], 16)}:{m[8]}")
        pend = self.pending.get(tid)
        if pend is not None:
            if pend[0] == "mmap":
                self.pending[tid] = (pend[0], pend[1], ident)
            return                                   # brk / mremap report their VMA: ignore
        if pid not in self.image:
            self.stats["mmap2_outside_exec"] += 1
            return
        prot = ("r" if m[9] == "r" else "") + ("w" if m[10] == "w" else "") + \
            ("x" if m[11] == "x" else "")
        if prot not in ("", "r", "rw", "rx", "rwx"):
            prot = "rwx"
        ev: dict[str, Any] = {"op": "mmap", "pid": pid, "start": start, "end": start + length,
                              "prot": prot, "shared": m[12] == "s"}
        if name == "[stack]":
            ev["flags"] = ["growsdown"]
            ev["_bprm"] = True
            self.image[pid].append(ev)
            # execve wrote argv/envp into the stack (copy_strings): it has an anon_vma.
            self.image[pid].append({"op": "touch", "pid": pid, "addr": start + length - 8,
                                    "write": True, "_bprm": True})
            return
        if name.startswith("["):
            ev["flags"] = ["special"]
        elif ident is not None:
            ev["file"] = ident
            ev["pgoff"] = int(m[5], 16) >> 12
        self.image[pid].append(ev)

    def _syscall_exit(self, pid: int, tid: int, name: str, rest: str,
                      out: list[dict[str, Any]]) -> None:
        pend = self.pending.pop(tid, None)
        if pend is None or pend[0] != name:
            return
        args, ident = pend[1], pend[2]
        ret = _args("ret: " + rest.strip()).get("ret")
        if ret is None:
            return
        failed = ret >= (1 << 64) - 4096 or ret < 0
        owner = self.mm_of(pid)
        if owner is None:
            self.stats["syscalls_without_mm"] += 1
            return
        self.stats["syscalls_" + name] += 1
        if name == "brk":
            self.emit({"op": "brk", "pid": owner, "end": ret}, out)
            return
        if failed:
            self.stats["syscalls_failed"] += 1
            return
        if name == "mmap":
            length = args.get("len", 0)
            flags = args.get("flags", 0)
            ev: dict[str, Any] = {"op": "mmap", "pid": owner, "start": ret, "end": ret + length,
                                  "prot": PROTS.get(args.get("prot", 0) & 7, "rwx"),
                                  "shared": bool(flags & MAP_SHARED)}
            extra = [f for bit, f in ((MAP_GROWSDOWN, "growsdown"), (MAP_NORESERVE, "noreserve"))
                     if flags & bit]
            if extra:
                ev["flags"] = extra
            if flags & MAP_STACK:
                ev["stack"] = True                 # VM_NOHUGEPAGE on THP kernels (the host)
            if ident is not None:
                ev["file"] = ident
                ev["pgoff"] = args.get("off", 0) >> 12
            self.emit(ev, out)
        elif name == "munmap":
            self.emit({"op": "munmap", "pid": owner, "start": args["addr"],
                       "end": args["addr"] + args["len"]}, out)
        elif name == "mprotect":
            self.emit({"op": "mprotect", "pid": owner, "start": args["start"],
                       "end": args["start"] + args["len"],
                       "prot": PROTS.get(args["prot"] & 7, "rwx")}, out)
        elif name == "madvise":
            advice = MADVICE.get(args.get("behavior", -1))
            if advice is None:
                # Advices that change no vm_flags (MADV_FREE, MADV_WILLNEED...) cannot change
                # anon_vma state; counted by number so that one that does is seen.
                self.stats["madvise_ignored"] += 1
                behavior = args.get("behavior", -1)
                self.stats[f"madvise_ignored_{behavior}"] += 1
                if behavior in FLAG_ADVICES and len(self.problems) < 20:
                    self.problems.append(
                        f"madvise pid {owner}: {FLAG_ADVICES[behavior]} changes vm_flags the "
                        "trace cannot express; the replay may split or merge differently")
                return
            self.emit({"op": "madvise", "pid": owner, "start": args["start"],
                       "end": args["start"] + args["len_in"], "advice": advice}, out)
        elif name == "mremap":
            ev = {"op": "mremap", "pid": owner, "start": args["addr"],
                  "end": args["addr"] + args["old_len"], "new_start": ret,
                  "new_end": ret + args["new_len"]}
            if args.get("flags", 0) & MREMAP_DONTUNMAP:
                ev["dontunmap"] = True
            self.emit(ev, out)

    def _count_alloc(self, rest: str) -> None:
        fields = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        name = fields.get("name")
        site = fields.get("call_site", "").split("+", 1)[0]
        if name == "vm_area_struct":
            self.live["vma_alloc"] += 1
        elif name == "anon_vma":
            self.live["anon_vma_fork" if site == "anon_vma_fork" else "anon_vma_prepare"] += 1
        elif name == "anon_vma_chain":
            key = {"anon_vma_fork": "avc_fork", "anon_vma_clone": "avc_clone",
                   "__anon_vma_prepare": "avc_prepare"}.get(site)
            if key:
                self.live[key] += 1


def convert(lines: Iterable[str], reduce: bool = True,
            progress: Callable[[int], None] | None = None) -> tuple[list[dict], Converter]:
    conv = Converter(reduce=reduce)
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines, 1):
        conv.feed(line, out)
        if progress and i % 1_000_000 == 0:
            progress(i)
    # Processes still alive when recording stopped (none, for a command that waits).
    conv.stats["alive_at_end"] = len(conv.own)
    return out, conv


def perf_script_lines(data: Path) -> Iterable[str]:
    proc = subprocess.Popen(script_argv(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1 << 20)
    assert proc.stdout is not None
    yield from proc.stdout
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        raise RmaplabError(f"perf script failed: {err.strip()[-300:]}")


def record(cmd: list[str], data: Path, cwd: Path | None = None, log=None) -> dict[str, Any]:
    """perf record CMD into ``data``; returns the command's status, wall time, lost events.

    perf record waits for CMD with wait() after its loop, so its exit status is CMD's
    (and it kills itself with CMD's signal): ``exit_status`` is CMD's, as subprocess
    reports it (-N for signal N).  Call :func:`rmaplab.measure.perf.check` first.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    log(f"recording {' '.join(cmd)} ...")
    start = time.perf_counter()
    proc = subprocess.run(record_argv(cmd, data), cwd=cwd, stderr=subprocess.PIPE, text=True,
                          errors="replace")
    wall = time.perf_counter() - start
    lost = re.findall(r"Lost (\d+)", proc.stderr or "")
    if not data.exists():
        raise RmaplabError(f"perf record failed: {(proc.stderr or '').strip()[-300:]}",
                           hint=perf.diagnose(proc.stderr or ""))
    return {"exit_status": proc.returncode, "wall_seconds": wall,
            "lost_events": sum(int(x) for x in lost), "perf_stderr": (proc.stderr or "")[-2000:],
            "perf_data_bytes": data.stat().st_size}


def write_outputs(directory: Path, events: list[dict], conv: Converter, meta: dict) -> None:
    from rmaplab.traces import dumps

    text = "".join(dumps(ev) + "\n" for ev in events).encode()
    (directory / "trace.jsonl.gz").write_bytes(gzip.compress(text, mtime=0))
    live = dict(conv.live)
    live.update(perf.derived({k: live.get(k, 0) for k in perf.COUNT_NAMES}))
    (directory / "live_counts.json").write_text(json.dumps(live, indent=1, sort_keys=True) + "\n")
    meta = {**meta, "capture_stats": dict(conv.stats), "problems": conv.problems,
            "events": len(events), "preamble_events": conv.preamble}
    (directory / "metadata.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def trace(cmd: list[str], target: Path, cwd: Path | None = None,
          perf_data: Path | None = None, extra_meta: dict[str, Any] | None = None,
          log: Callable[[str], None] | None = None) -> tuple[list[dict], Converter]:
    """Record ``cmd`` (or convert an existing ``perf_data``) into a new trace directory
    ``target``, written atomically and added to the raw-data manifest if it is in data/raw."""
    import os
    import tempfile

    from rmaplab import atomic, integrity
    from rmaplab.measure import host
    from rmaplab.paths import cache_dir, raw_dir

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if target.exists():
        raise RmaplabError("output directory exists; traces are never overwritten", path=target)
    meta: dict[str, Any] = {"host": host.describe(), "command": cmd,
                            "cwd": str(cwd) if cwd else None, "record_events": RECORD_EVENTS,
                            **(extra_meta or {})}
    if perf_data is not None:
        data = perf_data
        if not data.exists():
            raise RmaplabError("no such perf.data", path=data)
    else:
        cache_dir().mkdir(parents=True, exist_ok=True)
        data = Path(tempfile.mkdtemp(dir=cache_dir(), prefix="trace-")) / "perf.data"
        here = os.getcwd()
        if cwd:
            os.chdir(cwd)
        try:
            meta["record"] = record(cmd, data, log=log)
        finally:
            os.chdir(here)
    meta["perf_data"] = str(data)
    log(f"converting {data} ...")
    events, conv = convert(perf_script_lines(data),
                           progress=lambda n: log(f"  {n:,} perf lines"))
    with atomic.new_directory(target) as d:
        write_outputs(d, events, conv, meta)
    try:
        target.resolve().relative_to(raw_dir().resolve())
        integrity.add([target])
    except ValueError:
        pass
    return events, conv


VALIDATED = ("anon_vma_fork", "anon_vma_prepare", "anon_vma_alloc", "avc_fork", "avc_clone",
             "avc_prepare", "avc_alloc", "vma_alloc", "mm_forks")


def validation(events: list[dict[str, Any]], live: dict[str, int], preamble: int,
               policy: str | Policy = "v6.0", merge_rule: str = "uncowed", thp: bool = True
               ) -> list[dict[str, Any]]:
    """Model counts of the trace (minus its uncounted preamble) against the same run's live
    counts, one row per counter with the relative difference in percent (0 when both
    are 0, infinite when only the model counts)."""
    from rmaplab.traces import replay

    numbered = list(enumerate(events, 1))
    full = replay(numbered, policy=policy, merge_rule=merge_rule, check="off", thp=thp).counters
    pre = replay(numbered[:preamble], policy=policy, merge_rule=merge_rule,
                 check="off", thp=thp).counters
    rows = []
    for key in VALIDATED:
        model = full[key] - pre[key]
        want = live.get(key, 0)
        diff = 100.0 * (model - want) / want if want else (0.0 if model == 0 else math.inf)
        rows.append({"counter": key, "live": want, "model": model, "diff_pct": diff})
    return rows


def validate_trace(trace: Path, policy: str | Policy = "v6.0", merge_rule: str = "uncowed",
                   thp: bool = True) -> tuple[list[dict[str, Any]], Path]:
    """:func:`validation` of a trace recorded by ``rmaplab trace``: its live_counts.json and
    metadata.json (the preamble) are read from the trace's directory.  A trace under
    data/raw/ is checked against the manifest first."""
    from rmaplab import integrity, traces
    from rmaplab.paths import raw_dir

    trace = Path(trace)
    directory = trace.parent
    try:
        rel = trace.resolve().relative_to(raw_dir().resolve())
    except ValueError:
        rel = None
    if rel is not None:
        trace = integrity.raw_path(str(rel))
    files = {}
    for name in ("live_counts.json", "metadata.json"):
        path = directory / name
        if rel is not None:
            path = integrity.raw_path(str(rel.parent / name))
        try:
            files[name] = json.loads(path.read_text())
        except FileNotFoundError:
            raise RmaplabError(f"no {name} beside the trace", path=path,
                               hint="--validate needs a trace recorded by `rmaplab trace`") from None
        except json.JSONDecodeError as e:
            raise RmaplabError(f"not valid JSON ({e.msg})", path=path, line=e.lineno) from None
        except UnicodeDecodeError:
            raise RmaplabError("not valid UTF-8", path=path) from None
        if not isinstance(files[name], dict):
            raise RmaplabError(f"expected a JSON object, found {type(files[name]).__name__}",
                               path=path)
    live = files["live_counts.json"]
    # bool is an int to Python, and a count is never negative.
    missing = [k for k in VALIDATED if type(live.get(k)) is not int or live[k] < 0]
    if missing:
        raise RmaplabError(f"live counts lack {', '.join(missing)} (or not as whole numbers "
                           ">= 0)", path=directory / "live_counts.json")
    events = [ev for _, ev in traces.load(trace)]
    preamble = files["metadata.json"].get("preamble_events", 0)
    if type(preamble) is not int or not 0 <= preamble <= len(events):
        raise RmaplabError(f"preamble_events is {preamble!r}: expected a whole number from 0 "
                           f"to the trace's {len(events):,} events",
                           path=directory / "metadata.json")
    return (validation(events, live, preamble, policy, merge_rule, thp),
            directory / "live_counts.json")
