"""The in-vivo ceiling: how much of a build's sys time is spent where anon_vma work happens.

No model and no cost estimate: the build runs under ``perf record -a`` and the time
is read off the live kernel, in passes that are separate runs of the same build
(interleaved in a seeded random order, so drift does not line up with a pass):

``plain``
    no perf; the wait4() rusage of the build (:mod:`rmaplab.measure.timed`): the
    denominator.
``trace``
    tracepoint brackets, each charged only with the time its thread was on a CPU
    inside it (``sched:sched_switch`` on every CPU):

    * ``fork``: ``sys_enter_{clone,clone3,fork}`` .. the same thread's ``sys_exit``,
      when a ``task:task_newtask`` without CLONE_VM fired inside (dup_mmap ran, and
      with it anon_vma_fork for every VMA that has an anon_vma);
    * ``exit``: ``sched:sched_process_exit`` .. ``mmap:exit_mmap`` on the same thread.
      On the 6.18 kernel measured here sched_process_exit fires before exit_mm()
      (6.12's do_exit traced it after), and trace_exit_mmap() is exit_mmap()'s last
      statement, after unmap_vmas, free_pgtables (unlink_anon_vmas) and remove_vma;
    * ``exec``: ``sched:sched_prepare_exec`` .. ``mmap:exit_mmap`` before the thread's
      ``sys_exit_execve``: the old mm torn down by exec_mmap() (a vfork child has
      none: its bracket is dropped at sys_exit_execve);
    * ``prepare``: the mmap_lock read section (``mmap_lock_acquire_returned`` ..
      ``mmap_lock_released``, write=false) in which a ``kmem_cache_alloc`` from
      ``__anon_vma_prepare`` fired.  On the per-VMA-lock fault path that section is
      __vmf_anon_prepare()'s mmap_read_trylock() .. mmap_read_unlock() around
      __anon_vma_prepare(); on the mmap_lock path it is the whole locked fault.
      ``exceptions:page_fault_user`` has no exit event, so the fault itself cannot
      be bracketed; this section bounds the anon_vma work inside it.

    Each bracket is an upper bound of the anon_vma work it contains.
``sample``
    ``perf record -a -g --kernel-callchains -e cpu-clock -F FREQ``: kernel call chains
    of the build's threads, folded (``frame;frame;... count``), attributed to
    anon_vma_fork / anon_vma_clone / unlink_anon_vmas / __anon_vma_prepare and the
    slab, lock and interval-tree work under them.  What cpu-clock (the only sampling
    event of this VM) does with time spent with interrupts off: it is an hrtimer
    (perf_swevent_hrtimer, kernel/events/core.c), so it cannot fire inside an irq-off
    section; it fires when interrupts come back on, with the registers and call chain
    of that point (the leaf is the re-enable site, e.g. _raw_spin_unlock_irqrestore,
    still under the caller's chain), and it takes ONE sample however late it is:
    hrtimer_forward_now() skips the expiries it missed.  So an irq-off section shorter
    than a period is attributed to the right caller at the re-enable site, and one
    longer than a period loses (length / period - 1) samples.  Two checks: the share
    of anon_vma samples whose leaf is a re-enable site (:data:`IRQ_ENABLE_SITES`,
    ``samples_anon_irq_site``), and the ``validate`` conditions (avwork forkdepth with
    a known extra amount of anon_vma work, counted by perf stat), where the extra time
    sampled must equal the extra CPU time rusage reports (``sampled_over_rusage`` 1
    when no sample was lost) and fall under the anon_vma functions.
``locks``
    ``lock:contention_begin/end`` (chains on begin): time each thread waited per
    contended lock; a lock whose address is the rwsem of an anon_vma allocated
    during the run (``kmem_cache_alloc`` ``ptr`` + 8, struct anon_vma's
    ``root``-then-``rwsem`` layout) is an anon_vma root lock.  Optimistic spinning
    on a write rwsem happens before contention_begin and is seen only by sampling.

Raw perf.data files stay in the cache; what is kept per run is reduced:
bracket tables, folded stacks, lock waits (no kernel addresses).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmaplab.errors import RmaplabError
from rmaplab.measure import host, perf
from rmaplab.measure.data import read_recorded
from rmaplab.measure.staging import Staging
from rmaplab.paths import raw_dir

CLONE_VM = 0x100
ANON_FUNCS = ("anon_vma_fork", "anon_vma_clone", "unlink_anon_vmas", "__anon_vma_prepare")
# The paths that contain the anon_vma work of a fork and of an mm's teardown.
PATHS = ("dup_mmap", "exit_mmap")
PASSES = ("plain", "trace", "sample", "locks")
FORK_SYSCALLS = ("clone", "clone3", "fork")
# Where interrupts are re-enabled: a cpu-clock sample deferred by an irq-off section
# lands here (or in the function that inlines the restore).
IRQ_ENABLE_SITES = ("_raw_spin_unlock_irqrestore", "_raw_spin_unlock_irq", "finish_task_switch",
                    "__local_bh_enable_ip", "irqentry_exit", "do_softirq", "__do_softirq",
                    "handle_softirqs")
SUBCATEGORIES = (
    ("slab", ("kmem_cache_", "__kmem_cache", "___slab", "__slab", "slab_", "kfree",
              "__memcg_slab", "obj_cgroup", "memcg_slab", "put_cpu_partial", "__put_partials",
              "anon_vma_ctor", "allocate_slab", "discard_slab", "free_slab", "rcu_free_slab",
              "mod_objcg_state")),
    ("lock", ("down_write", "up_write", "down_read", "up_read", "rwsem_", "_raw_spin_",
              "queued_spin", "osq_", "__down_", "__up_", "mutex_")),
    ("interval tree", ("anon_vma_interval_tree_", "__anon_vma_interval_tree_")),
)
ANON_VMA_RWSEM_OFFSET = 8   # struct anon_vma { struct anon_vma *root; struct rw_semaphore rwsem; }

TRACE_EVENTS: tuple[tuple[str, str | None], ...] = (
    ("sched:sched_switch", None),
    ("task:task_newtask", None),
    *((f"syscalls:sys_{d}_{s}", None) for s in FORK_SYSCALLS for d in ("enter", "exit")),
    ("syscalls:sys_exit_execve", None),
    ("sched:sched_process_exit", None),
    ("sched:sched_prepare_exec", None),
    ("mmap:exit_mmap", None),
    ("kmem:kmem_cache_alloc", "call_site.function == __anon_vma_prepare"),
    ("mmap_lock:mmap_lock_acquire_returned", "write == 0 && success == 1"),
    ("mmap_lock:mmap_lock_released", "write == 0"),
)
LOCK_EVENTS: tuple[tuple[str, str | None], ...] = (
    ("lock:contention_begin/call-graph=fp/", None),
    ("lock:contention_end", None),
    ("kmem:kmem_cache_alloc", 'name == "anon_vma"'),
)


# ---------------------------------------------------------------------------- perf script


@dataclass
class Record:
    tid: int
    t: int               # ns
    event: str
    trace: str
    period: int = 0
    frames: list[str] = field(default_factory=list)   # leaf first, as perf prints them


HEADER = re.compile(r"^\s*(-?\d+)\s+(\d+)\.(\d{9}):\s+(?:(\d+)\s+)?"
                    r"([\w.-]+(?::[\w.-]+)?):\s?(.*)$")
# perf's side-band records print in their own layout (with comm and CPU, whatever -F says).
SIDEBAND = re.compile(r"\s(\d+)\.(\d{9}):\s+(PERF_RECORD_\w+):?\s?(.*)$")


def records(lines: Iterable[str], source: str = "perf script") -> Iterator[Record]:
    """perf script records (``--ns -F tid,time,[period,]event,[trace,]ip,sym``), frames attached.

    With ``--show-task-events`` perf's own task records come as events named
    ``PERF_RECORD_FORK`` etc., their text in ``trace``.
    """
    current: Record | None = None
    for n, line in enumerate(lines, 1):
        if line.startswith("\t"):
            if current is not None:
                parts = line.split(None, 1)
                current.frames.append(parts[1].strip() if len(parts) > 1 else parts[0])
            continue
        if not line.strip():
            continue
        if "PERF_RECORD_" in line and (side := SIDEBAND.search(line)):
            if current is not None:
                yield current
            sec, nsec, event, trace = side.groups()
            current = Record(-1, int(sec) * 1_000_000_000 + int(nsec), event, trace)
            continue
        m = HEADER.match(line)
        if m is None:
            raise RmaplabError(f"unexpected perf script line: {line.strip()[:80]!r}",
                               path=source, line=n)
        if current is not None:
            yield current
        tid, sec, nsec, period, event, trace = m.groups()
        current = Record(int(tid), int(sec) * 1_000_000_000 + int(nsec), event, trace,
                         int(period or 0))
    if current is not None:
        yield current


def _field(trace: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){name}=(\S+)", trace)
    return m.group(1) if m else None


FORK_RECORD = re.compile(r"\((-?\d+):(-?\d+)\):\((-?\d+):(-?\d+)\)")


class Tree:
    """The workload's threads: its root and every thread created under it.

    Membership comes from perf's PERF_RECORD_FORK side-band records (perf's own task
    tracking): in runs that also sample cpu-clock with call chains, a few percent of
    ``task_newtask`` tracepoint records were missing from perf.data on this machine
    without any LOST record, while the side-band records were complete.
    """

    def __init__(self, root: int) -> None:
        self.members = {root}

    def fork_record(self, rec: Record) -> bool:
        """Add the child of a PERF_RECORD_FORK whose parent is a member; True if added."""
        m = FORK_RECORD.search(rec.trace)
        if m and int(m.group(4)) in self.members:
            self.members.add(int(m.group(2)))
            return True
        return False

    @staticmethod
    def newtask(rec: Record) -> tuple[int, int]:
        return int(_field(rec.trace, "pid") or -1), int(_field(rec.trace, "clone_flags") or "0", 16)

    def __contains__(self, tid: int) -> bool:
        return tid in self.members


# ---------------------------------------------------------------------------- trace pass


@dataclass
class Bracket:
    kind: str
    start: int
    oncpu: int = 0
    allocs: int = 0
    mm_copied: bool = False
    mm: str | None = None


class TraceReducer:
    """Brackets of the trace pass with the on-CPU time of their thread inside them."""

    def __init__(self, root: int) -> None:
        self.tree = Tree(root)
        self.since: dict[int, int] = {}                  # tid -> last switch-in
        self.open: dict[int, dict[str, Bracket]] = defaultdict(dict)
        self.sections: dict[int, list[Bracket]] = defaultdict(list)   # mmap_lock read sections
        self.rows: list[dict[str, Any]] = []
        self.stats: Counter[str] = Counter()
        self.t0: int | None = None

    def _charge(self, tid: int, b: Bracket, now: int) -> None:
        b.oncpu += now - max(b.start, self.since.get(tid, b.start))

    def _emit(self, tid: int, b: Bracket, now: int) -> None:
        self._charge(tid, b, now)
        self.rows.append({"kind": b.kind, "tid": tid, "start_ns": b.start - (self.t0 or 0),
                          "wall_ns": now - b.start, "oncpu_ns": b.oncpu, "allocs": b.allocs})
        self.stats[f"bracket_{b.kind}"] += 1

    def feed(self, rec: Record) -> None:
        if self.t0 is None:
            self.t0 = rec.t
        ev, tid, now = rec.event, rec.tid, rec.t
        if ev == "sched:sched_switch":
            prev = int(_field(rec.trace, "prev_pid") or -1)
            nxt = int(_field(rec.trace, "next_pid") or -1)
            for b in (*self.open.get(prev, {}).values(), *self.sections.get(prev, ())):
                self._charge(prev, b, now)
            self.since.pop(prev, None)
            self.since[nxt] = now
            return
        if ev == "PERF_RECORD_FORK":
            self.stats["fork_records_in_tree"] += self.tree.fork_record(rec)
            return
        if ev == "task:task_newtask":
            _, flags = self.tree.newtask(rec)
            if tid in self.tree:
                self.stats["newtask_in_tree"] += 1
            fork = self.open.get(tid, {}).get("fork")
            if fork is not None and not flags & CLONE_VM:
                fork.mm_copied = True
            return
        if tid not in self.tree:
            return
        opened = self.open[tid]
        name = ev.split(":", 1)[1]
        if name.startswith("sys_enter_") and name[10:] in FORK_SYSCALLS:
            opened["fork"] = Bracket("fork", now)
        elif name.startswith("sys_exit_") and name[9:] in FORK_SYSCALLS:
            b = opened.pop("fork", None)
            if b is not None:
                if b.mm_copied:
                    self._emit(tid, b, now)
                else:
                    self.stats["clone_sharing_mm"] += 1
        elif name == "sys_exit_execve":
            if opened.pop("exec", None) is not None:
                self.stats["exec_without_teardown"] += 1
        elif name == "sched_process_exit":
            opened.pop("exec", None)
            opened["exit"] = Bracket("exit", now)
        elif name == "sched_prepare_exec":
            opened["exec"] = Bracket("exec", now)
        elif name == "exit_mmap":
            b = opened.pop("exit", None) or opened.pop("exec", None)
            if b is not None:
                self._emit(tid, b, now)
            else:
                self.stats["exit_mmap_outside_brackets"] += 1
        elif name == "kmem_cache_alloc":
            self.stats["prepare_allocs"] += 1
            if self.sections[tid]:
                self.sections[tid][-1].allocs += 1
            else:
                self.stats["prepare_allocs_outside_read_sections"] += 1
        elif name == "mmap_lock_acquire_returned":
            self.sections[tid].append(Bracket("prepare", now, mm=_field(rec.trace, "mm")))
        elif name == "mmap_lock_released":
            mm = _field(rec.trace, "mm")
            stack = self.sections[tid]
            for i in range(len(stack) - 1, -1, -1):
                if stack[i].mm == mm:
                    b = stack.pop(i)
                    if b.allocs:
                        self._emit(tid, b, now)
                    break

    def finish(self) -> tuple[pd.DataFrame, dict[str, int]]:
        self.stats["unclosed"] = sum(len(v) for v in self.open.values())
        self.stats["threads"] = len(self.tree.members)
        cols = ["kind", "tid", "start_ns", "wall_ns", "oncpu_ns", "allocs"]
        return pd.DataFrame(self.rows, columns=cols), dict(sorted(self.stats.items()))


# ---------------------------------------------------------------------------- sample pass


class SampleReducer:
    """cpu-clock samples folded by thread group (build, other, idle) and kernel chain."""

    def __init__(self, root: int) -> None:
        self.tree = Tree(root)
        self.folded: Counter[str] = Counter()
        self.periods: Counter[int] = Counter()
        self.stats: Counter[str] = Counter()

    def feed(self, rec: Record) -> None:
        if rec.event == "PERF_RECORD_FORK":
            self.tree.fork_record(rec)
            return
        if rec.event != "cpu-clock":
            return
        self.periods[rec.period] += 1
        group = "build" if rec.tid in self.tree else ("idle" if rec.tid == 0 else "other")
        stack = ";".join(reversed(rec.frames)) if rec.frames else "[user]"
        self.folded[f"{group};{stack}"] += 1
        self.stats[f"samples_{group}"] += 1

    def finish(self) -> tuple[str, dict[str, Any]]:
        text = "".join(f"{k} {v}\n" for k, v in sorted(self.folded.items()))
        period = self.periods.most_common(1)[0][0] if self.periods else 0
        stats = {**dict(sorted(self.stats.items())), "period_ns": period,
                 "periods_differing": sum(v for k, v in self.periods.items() if k != period),
                 "threads": len(self.tree.members)}
        return text, stats


# ---------------------------------------------------------------------------- locks pass


class LockReducer:
    """Waits on contended locks (begin .. end on one thread), folded by lock class and chain."""

    def __init__(self, root: int) -> None:
        self.tree = Tree(root)
        self.anon_vma_locks: set[int] = set()
        self.waiting: dict[int, list[tuple[int, str, int, list[str]]]] = defaultdict(list)
        self.waits: list[tuple[int, str, int, list[str], int]] = []
        self.stats: Counter[str] = Counter()

    def feed(self, rec: Record) -> None:
        name = rec.event.split(":", 1)[-1]
        if name == "PERF_RECORD_FORK":
            self.tree.fork_record(rec)
        elif name == "kmem_cache_alloc":
            ptr = _field(rec.trace, "ptr")
            if ptr:
                self.anon_vma_locks.add(int(ptr, 16) + ANON_VMA_RWSEM_OFFSET)
        elif name == "contention_begin":
            addr = int(rec.trace.split()[0], 16)
            flags = re.search(r"flags=([A-Z|]+)", rec.trace)
            self.waiting[rec.tid].append((addr, flags.group(1) if flags else "?", rec.t,
                                          rec.frames))
        elif name == "contention_end":
            addr = int(rec.trace.split()[0], 16)
            stack = self.waiting.get(rec.tid, [])
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == addr:
                    a, flags, t0, frames = stack.pop(i)
                    self.waits.append((rec.tid, flags, rec.t - t0, frames, a))
                    break
            else:
                self.stats["end_without_begin"] += 1

    def finish(self) -> tuple[str, dict[str, Any]]:
        # Classified at the end: an anon_vma allocated after a wait began is still known.
        folded: Counter[str] = Counter()
        waited: Counter[str] = Counter()
        for tid, flags, wait, frames, addr in self.waits:
            group = "build" if tid in self.tree else "other"
            lock = "anon_vma" if addr in self.anon_vma_locks else "other"
            key = f"{group};{lock};{flags};" + ";".join(reversed(frames))
            folded[key] += 1
            waited[key] += wait
            self.stats[f"waits_{group}_{lock}"] += 1
        text = "".join(f"{k} {folded[k]} {waited[k]}\n" for k in sorted(folded))
        stats = {**dict(sorted(self.stats.items())),
                 "unfinished": sum(len(v) for v in self.waiting.values()),
                 "anon_vmas_seen": len(self.anon_vma_locks), "threads": len(self.tree.members)}
        return text, stats


# ---------------------------------------------------------------------------- recording


def _events(events: Iterable[tuple[str, str | None]]) -> list[str]:
    argv: list[str] = []
    for event, flt in events:
        argv += ["-e", event]
        if flt:
            argv += ["--filter", flt]
    return argv


def record_argv(kind: str, data: Path, cmd: list[str], freq: int = 4000) -> list[str]:
    """perf record -a for one pass (``trace``, ``sample`` or ``locks``) around CMD."""
    # -B: no build-id pass over perf.data at the end (kernel symbols come from kallsyms)
    argv = [perf.perf_binary(), "record", "-q", "-a", "-B", "-m", "32M", "-o", str(data)]
    if kind == "trace":
        argv += _events(TRACE_EVENTS)
    elif kind == "sample":
        argv += ["-g", "--kernel-callchains", "-e", "cpu-clock", "-F", str(freq)]
    elif kind == "locks":
        argv += ["--kernel-callchains", *_events(LOCK_EVENTS)]
    else:
        raise ValueError(kind)
    return [*argv, "--", *cmd]


def script_argv(kind: str, data: Path) -> list[str]:
    fields = {"trace": ["-F", "trace:tid,time,event,trace"],
              "sample": ["-F", "sw:tid,time,period,event,ip,sym",
                         "-F", "trace:tid,time,event,trace"],
              "locks": ["-F", "trace:tid,time,event,trace,ip,sym"]}[kind]
    return [perf.perf_binary(), "script", "--ns", "--show-task-events", "-i", str(data), *fields]


def reduce(kind: str, lines: Iterable[str], root: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Turn one pass's perf script output into the files kept for it, and its stats."""
    reducer: TraceReducer | SampleReducer | LockReducer
    reducer = {"trace": TraceReducer, "sample": SampleReducer, "locks": LockReducer}[kind](root)
    for rec in records(lines):
        reducer.feed(rec)
    if isinstance(reducer, TraceReducer):
        table, stats = reducer.finish()
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        return {"brackets.csv.gz": gzip.compress(buf.getvalue().encode(), mtime=0)}, stats
    text, stats = reducer.finish()
    name = "folded.txt.gz" if kind == "sample" else "locks.txt.gz"
    return {name: gzip.compress(text.encode(), mtime=0)}, stats


def _lost_events(data: Path) -> int:
    """Records perf lost (ring buffer full) or dropped, from ``perf report --stats``."""
    proc = subprocess.run([perf.perf_binary(), "report", "--stats", "-i", str(data)],
                          capture_output=True, text=True)
    return sum(int(n) for n in re.findall(r"LOST(?:_SAMPLES)? events:\s+(\d+)", proc.stdout))


def _script_lines(kind: str, data: Path) -> Iterator[str]:
    proc = subprocess.Popen(script_argv(kind, data), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1 << 20)
    assert proc.stdout is not None
    yield from proc.stdout
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        raise RmaplabError(f"perf script failed: {err.strip()[-300:]}")


@dataclass
class Condition:
    label: str
    kind: str                   # plain | trace | sample | locks
    cmd: list[str]
    jobs: int | None = None
    workload: str = "build"     # build | validate
    shell: str | None = None
    cwd: str | None = None
    before: list[str] | None = None


def _timed_cmd(cmd: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "rmaplab.measure.timed", "--out", str(out), "--", *cmd]


def run_one(cond: Condition, scratch: Path, freq: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """One run of one condition: record, reduce, return its row and files."""
    if cond.before:
        prep = subprocess.run(cond.before, cwd=cond.cwd, capture_output=True)
        if prep.returncode != 0:
            raise RmaplabError(f"preparation {' '.join(cond.before)!r} failed: "
                               f"{prep.stderr.decode(errors='replace')[-300:]}")
    timing = scratch / "timing.json"
    timing.unlink(missing_ok=True)
    log_path = scratch / "output.log"
    start = time.perf_counter()
    files: dict[str, bytes] = {}
    stats: dict[str, Any] = {}
    with open(log_path, "wb") as log:
        if cond.kind == "plain":
            proc = subprocess.run(_timed_cmd(cond.cmd, timing), cwd=cond.cwd, stdout=log,
                                  stderr=subprocess.STDOUT)
            perf_err = ""
        else:
            data = scratch / "perf.data"
            proc = subprocess.run(record_argv(cond.kind, data, _timed_cmd(cond.cmd, timing), freq),
                                  cwd=cond.cwd, stdout=log, stderr=subprocess.PIPE)
            perf_err = proc.stderr.decode(errors="replace")
    wall = time.perf_counter() - start
    if not timing.exists():
        raise RmaplabError(f"{cond.label}: the workload did not run ({perf_err.strip()[-300:]})",
                           hint=perf.diagnose(perf_err))
    result = json.loads(timing.read_text())
    output = log_path.read_bytes()
    if cond.kind != "plain":
        stats["perf_data_bytes"] = data.stat().st_size
        stats["lost_events"] = _lost_events(data)
        files, reduced = reduce(cond.kind, _script_lines(cond.kind, data), result["pid"])
        stats.update(reduced)
        data.unlink()
    files["output.log.gz"] = gzip.compress(output, mtime=0)
    files["stats.json"] = (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode()
    row = {"label": cond.label, "kind": cond.kind, "workload": cond.workload,
           "shell": cond.shell, "jobs": cond.jobs,
           "real": result["real"], "user": result["user"], "sys": result["sys"],
           "exit_status": result["exit_status"], "failed": result["exit_status"] != 0,
           "wall_with_processing": round(time.perf_counter() - start, 3),
           "wall_recording": round(wall, 3), "lost_events": stats.get("lost_events", 0),
           "loadavg_before": None}
    return row, files


VALIDATION = {   # label -> avwork forkdepth condition
    "validate-s0-d1": {"layout": "sep", "state": 0, "depth": 1, "ancestors": "alive"},
    "validate-s1-d1": {"layout": "sep", "state": 1, "depth": 1, "ancestors": "alive"},
    "validate-s1-d4": {"layout": "sep", "state": 1, "depth": 4, "ancestors": "alive"},
}
# (more work, baseline, what the extra work is)
CONTRASTS = (
    ("validate-s1-d4", "validate-s1-d1",
     "deeper chains: only more AVCs (anon_vma_clone at fork, unlink_anon_vmas at exit)"),
    ("validate-s1-d1", "validate-s0-d1",
     "an anon_vma per VMA: anon_vma_fork/unlink_anon_vmas and the page-table walk it enables"),
)


def validation_conditions(exe: Path, k: int, forks: int) -> list[Condition]:
    """avwork forkdepth conditions whose differences are known anon_vma work, sampled.

    Between d4 and d1 the only extra work is anon_vma_chains (3 more per VMA per fork:
    anon_vma_clone at fork, unlink_anon_vmas at exit), so the extra samples should all
    fall under the anon_vma functions and add up to the extra CPU time rusage reports.
    Between s1 and s0 the extra is an anon_vma per VMA plus copy_page_range's walk of
    those VMAs (vma_needs_copy() is true once a VMA has an anon_vma).
    """
    from rmaplab.measure.cost import _forkdepth_argv

    return [Condition(label, "sample", _forkdepth_argv(str(exe), {**c, "k": k}, forks),
                      workload="validate") for label, c in VALIDATION.items()]


def count_validation(exe: Path, k: int, forks: int) -> dict[str, dict[str, Any]]:
    """Per-fork allocations of each validation condition, counted by perf stat."""
    from rmaplab.measure.cost import count_condition

    out = {}
    with tempfile.TemporaryDirectory(prefix="rmaplab-count-") as tmp:
        for label, c in VALIDATION.items():
            out[label], _ = count_condition(str(exe), {**c, "k": k}, forks, Path(tmp))
    return out


def build_conditions(builds: dict[str, Callable[[int], list[str]]], cwd: Path | None,
                     before: list[str] | None, passes: Iterable[str] = PASSES, jobs: int = 2,
                     oversubscribed: int = 8) -> list[Condition]:
    """Every pass at -j``jobs`` for every build (shell); plain and locks also at
    -j``oversubscribed`` (0: not)."""
    passes = list(passes)
    unknown = set(passes) - set(PASSES)
    if unknown:
        raise RmaplabError(f"unknown pass(es) {', '.join(sorted(unknown))}",
                           hint="choose from " + ", ".join(PASSES))
    conds = []
    for shell, build in builds.items():
        levels = [(jobs, passes)]
        if oversubscribed:
            levels.append((oversubscribed, [k for k in ("plain", "locks") if k in passes]))
        for j, kinds in levels:
            for kind in kinds:
                conds.append(Condition(f"{shell}/{kind}-j{j}", kind, build(j), j, shell=shell,
                                       cwd=str(cwd) if cwd else None, before=before))
    return conds


def campaign(conds: list[Condition], repeats: int = 3, freq: int = 4000, seed: int = 2019,
             validate: tuple[int, int, int] | None = (128, 4000, 3), label: str = "ceiling",
             out_root: Path | None = None, record: bool = True,
             log: Callable[[str], None] | None = None,
             extra_meta: dict[str, Any] | None = None) -> tuple[pd.DataFrame, Path | None]:
    """Run every condition ``repeats`` times, plus the sampled validation workload
    ``validate`` = (K, forks, repeats), in a seeded random order; staged as runs finish
    (rerunning resumes), published atomically under data/raw/ceiling/."""
    from rmaplab.measure import micro

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    perf.check()
    schedule = [c for c in conds for _ in range(repeats)]
    counted = {}
    if validate:
        k, forks, vrep = validate
        schedule += [c for c in validation_conditions(micro.binary(), k, forks)
                     for _ in range(vrep)]
        log("counting the validation workloads with perf stat ...")
        counted = count_validation(micro.binary(), k, forks)
    if not schedule:
        raise RmaplabError("nothing to run", hint="give passes, or a validation size")
    random.Random(seed).shuffle(schedule)
    config = {"conditions": [c.__dict__ for c in schedule], "freq": freq, "seed": seed}
    meta = {"host": host.describe(), **config, "order": [c.label for c in schedule],
            "trace_events": TRACE_EVENTS, "lock_events": LOCK_EVENTS, "anon_funcs": ANON_FUNCS,
            "validation_counts": counted, **(extra_meta or {})}
    stage = Staging("ceiling", label, config, log) if record else None
    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    durations: list[float] = []
    log(f"{len(schedule)} runs: {len(conds)} condition(s) x {repeats}"
        + (f" + validation {len(VALIDATION) * validate[2]}" if validate else ""))
    with tempfile.TemporaryDirectory(prefix="rmaplab-ceiling-") as tmp:
        for order, cond in enumerate(schedule, 1):
            counts[cond.label] += 1
            if stage is not None and stage.done(order):
                rows.append(stage.rows[order])
                continue
            loadavg = Path("/proc/loadavg").read_text().strip()
            t0 = time.perf_counter()
            row, files = run_one(cond, Path(tmp), freq)
            durations.append(time.perf_counter() - t0)
            row.update({"order": order, "repeat": counts[cond.label], "loadavg_before": loadavg})
            files = {f"run-{order:03d}.{name}": data for name, data in files.items()}
            rows.append(row)
            if stage is not None:
                stage.add(order, row, files)
            left = sum(durations) / len(durations) * (len(schedule) - order)
            log(f"  [{order}/{len(schedule)}] {cond.label}: real {row['real']:.1f} s, "
                f"sys {row['sys']:.2f} s, lost events {row['lost_events']}; "
                f"about {left / 60:.0f} min left")
    table = pd.DataFrame(rows)
    if stage is None:
        return table, None
    target = stage.publish(out_root or raw_dir() / "ceiling", meta)
    log(f"recorded in {target}")
    return table, target


# ---------------------------------------------------------------------------- analysis


def load(directory: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """runs.csv and metadata.json of a ceiling campaign."""
    runs = pd.read_csv(io.BytesIO(read_recorded(directory / "runs.csv")))
    return runs, json.loads(read_recorded(directory / "metadata.json"))


def campaign_per_shell(name: str | None = None) -> dict[str, Path]:
    """The recorded ceiling campaign each recipe shell is read from: the newest complete
    campaign with sample runs of builds by that shell (campaigns may measure one shell
    each, so that each stays within a quiet hour).  ``name`` (a directory under
    data/raw/ceiling/) takes every shell from that campaign alone."""
    from rmaplab.measure import data

    if name is not None:
        dirs = [data.recorded("ceiling", "runs.csv", name)]
    else:
        dirs = [d for d in reversed(data.campaigns("ceiling")) if (d / "runs.csv").exists()]
    chosen: dict[str, Path] = {}
    for directory in dirs:
        runs, _ = load(directory)
        sampled = runs[(runs["workload"] == "build") & (runs["kind"] == "sample")
                       & ~runs["failed"].astype(bool)]
        for shell in sorted(sampled["shell"].dropna().unique()):
            chosen.setdefault(str(shell), directory)
    return dict(sorted(chosen.items()))


def _read(directory: Path, order: int, name: str) -> bytes:
    return read_recorded(directory / f"run-{order:03d}.{name}")


def folded(directory: Path, order: int) -> pd.DataFrame:
    """Folded stacks of one sample run: group, frames (root first), samples."""
    rows = []
    for line in gzip.decompress(_read(directory, order, "folded.txt.gz")).decode().splitlines():
        stack, _, count = line.rpartition(" ")
        group, _, frames = stack.partition(";")
        rows.append({"group": group, "frames": frames, "samples": int(count)})
    return pd.DataFrame(rows, columns=["group", "frames", "samples"])


def _subcategory(below: list[str]) -> str:
    for frame in below:
        for name, prefixes in SUBCATEGORIES:
            if frame.startswith(prefixes):
                return name
    return "own code"


def classify(frames: str) -> dict[str, str]:
    """Where one kernel stack (root first, ';'-joined) spends its sample."""
    chain = frames.split(";") if frames else []
    if chain == ["[user]"]:
        return {"mode": "user", "anon": "", "sub": "", "path": "", "leaf": ""}
    anon = next((f for f in chain if f in ANON_FUNCS), "")
    sub = _subcategory(chain[chain.index(anon) + 1:]) if anon else ""
    path = next((f for f in chain if f in PATHS), "")
    return {"mode": "kernel", "anon": anon, "sub": sub, "path": path,
            "leaf": chain[-1] if chain else ""}


def attribution(stacks: pd.DataFrame, group: str = "build") -> pd.DataFrame:
    """Kernel samples of ``group`` by anon_vma function and what runs under it."""
    d = stacks[stacks["group"] == group]
    cls = pd.DataFrame([classify(f) for f in d["frames"]], index=d.index)
    return pd.concat([d, cls], axis=1)


def irq_site(leaf: str) -> bool:
    return leaf.startswith(IRQ_ENABLE_SITES)


def sample_summary(directory: Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per sample run: kernel samples of the build and their anon_vma share."""
    if runs is None:
        runs, _ = load(directory)
    out = []
    for _, r in runs[runs["kind"] == "sample"].iterrows():
        stats = json.loads(_read(directory, int(r["order"]), "stats.json"))
        a = attribution(folded(directory, int(r["order"])))
        kern = a[a["mode"] == "kernel"]
        period_s = stats["period_ns"] * 1e-9
        row = {"order": int(r["order"]), "label": r["label"], "workload": r["workload"],
               "shell": r["shell"], "jobs": r["jobs"], "period_s": period_s, "rusage_sys": r["sys"],
               "rusage_cpu": r["sys"] + r["user"],
               "samples_user": int(a.loc[a["mode"] == "user", "samples"].sum()),
               "samples_kernel": int(kern["samples"].sum()),
               "samples_paths": int(kern.loc[kern["path"] != "", "samples"].sum()),
               "samples_anon": int(kern.loc[kern["anon"] != "", "samples"].sum()),
               "samples_anon_irq_site": int(kern.loc[(kern["anon"] != "")
                                                     & kern["leaf"].map(irq_site),
                                                     "samples"].sum()),
               "samples_kernel_irq_site": int(kern.loc[kern["leaf"].map(irq_site),
                                                       "samples"].sum())}
        for fn in ANON_FUNCS:
            row[f"samples_{fn}"] = int(kern.loc[kern["anon"] == fn, "samples"].sum())
        for sub in ("slab", "lock", "interval tree", "own code"):
            row[f"samples_anon_{sub.replace(' ', '_')}"] = int(
                kern.loc[(kern["anon"] != "") & (kern["sub"] == sub), "samples"].sum())
        out.append(row)
    return pd.DataFrame(out)


def brackets(directory: Path, order: int) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(gzip.decompress(_read(directory, order, "brackets.csv.gz"))))


def bracket_summary(directory: Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trace run and bracket kind: count, on-CPU and wall seconds."""
    if runs is None:
        runs, _ = load(directory)
    out = []
    for _, r in runs[runs["kind"] == "trace"].iterrows():
        b = brackets(directory, int(r["order"]))
        for kind in ("fork", "exit", "exec", "prepare"):
            sel = b[b["kind"] == kind]
            out.append({"order": int(r["order"]), "shell": r["shell"], "jobs": r["jobs"],
                        "component": kind,
                        "n": len(sel), "oncpu_s": sel["oncpu_ns"].sum() * 1e-9,
                        "wall_s": sel["wall_ns"].sum() * 1e-9,
                        "allocs": int(sel["allocs"].sum()), "run_sys": r["sys"]})
    return pd.DataFrame(out)


def locks(directory: Path, order: int) -> pd.DataFrame:
    rows = []
    text = gzip.decompress(_read(directory, order, "locks.txt.gz")).decode()
    for line in text.splitlines():
        stack, count, wait = line.rsplit(" ", 2)
        group, lock, flags, frames = (stack.split(";", 3) + [""])[:4]
        rows.append({"group": group, "lock": lock, "flags": flags, "frames": frames,
                     "waits": int(count), "wait_ns": int(wait)})
    return pd.DataFrame(rows, columns=["group", "lock", "flags", "frames", "waits", "wait_ns"])


def lock_summary(directory: Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per locks run and lock class (build threads only): waits and time waited."""
    if runs is None:
        runs, _ = load(directory)
    out = []
    for _, r in runs[runs["kind"] == "locks"].iterrows():
        lk = locks(directory, int(r["order"]))
        lk = lk[lk["group"] == "build"]
        anon_code = lk["frames"].map(lambda f: any(fn in f.split(";") for fn in ANON_FUNCS)
                                     ).astype(bool)
        for name, sel in (("anon_vma root lock", lk["lock"] == "anon_vma"),
                          ("other lock in anon_vma code", (lk["lock"] != "anon_vma") & anon_code),
                          ("any other lock", (lk["lock"] != "anon_vma") & ~anon_code)):
            out.append({"order": int(r["order"]), "shell": r["shell"], "jobs": r["jobs"],
                        "lock": name,
                        "waits": int(lk.loc[sel, "waits"].sum()),
                        "wait_s": lk.loc[sel, "wait_ns"].sum() * 1e-9, "run_sys": r["sys"],
                        "run_real": r["real"]})
    return pd.DataFrame(out)


def _mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    from scipy import stats

    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def denominator(runs: pd.DataFrame, shell: str, jobs: int) -> dict[str, Any]:
    """Uninstrumented build sys time at -j``jobs`` from the campaign's plain runs."""
    plain = runs[(runs["kind"] == "plain") & (runs["shell"] == shell) & (runs["jobs"] == jobs)
                 & ~runs["failed"].astype(bool)]
    if plain.empty:
        raise RmaplabError(f"no plain {shell} -j{jobs} runs in the ceiling campaign",
                           hint="rmaplab ceiling records them with the plain pass")
    mean, lo, hi = _mean_ci(plain["sys"].to_numpy())
    if mean <= 0:
        raise RmaplabError(f"the plain {shell} -j{jobs} runs have no sys time (rusage is "
                           "tick-accounted: the build is too short to be a denominator)",
                           hint="measure a longer build")
    return {"sys_s": mean, "ci_low": lo, "ci_high": hi, "n": len(plain)}


def ceiling_table(directory: Path, shell: str, jobs: int = 2) -> pd.DataFrame:
    """The ceiling, component by component, as seconds and % of uninstrumented build sys.

    Brackets (trace pass) bound the time of the paths; sampling (sample pass) measures
    the anon_vma functions themselves and the paths that contain them.  Means over
    repeats with a t-interval; the denominator is the mean sys of the plain runs.
    """
    runs, _ = load(directory)
    runs = runs[(runs["workload"] == "build") & (runs["shell"] == shell)]
    den = denominator(runs, shell, jobs)
    rows = []

    kernel_s = float("nan")

    def add(source: str, component: str, seconds: np.ndarray) -> None:
        mean, lo, hi = _mean_ci(seconds)
        rows.append({"shell": shell, "jobs": jobs, "source": source, "component": component,
                     "n_runs": len(seconds),
                     "pct_of_sampled_kernel": (100 * mean / kernel_s if source == "sampling"
                                               else float("nan")),
                     "seconds": mean, "ci_low_s": lo, "ci_high_s": hi,
                     "pct_of_sys": 100 * mean / den["sys_s"],
                     "pct_ci_low": 100 * lo / den["sys_s"], "pct_ci_high": 100 * hi / den["sys_s"],
                     "denominator_sys_s": den["sys_s"]})

    br = bracket_summary(directory, runs)
    br = br[br["jobs"] == jobs]
    if not br.empty:
        per_run = br.pivot(index="order", columns="component", values="oncpu_s")
        for kind in ("fork", "exit", "exec", "prepare"):
            add("brackets (on-CPU)", kind, per_run[kind].to_numpy())
        add("brackets (on-CPU)", "all four", per_run.sum(axis=1).to_numpy())
    sm = sample_summary(directory, runs)
    sm = sm[sm["jobs"] == jobs]
    if not sm.empty:
        # tick-accounted rusage sys can differ from the sampled kernel time; each sampled
        # share is also given as a share of the samples in the kernel
        kernel_s = (sm["samples_kernel"] * sm["period_s"]).mean()
        p = sm["period_s"]
        add("sampling", "kernel, build threads", (sm["samples_kernel"] * p).to_numpy())
        add("sampling", "dup_mmap + exit_mmap", (sm["samples_paths"] * p).to_numpy())
        for fn in ANON_FUNCS:
            add("sampling", fn, (sm[f"samples_{fn}"] * p).to_numpy())
        add("sampling", "anon_vma functions", (sm["samples_anon"] * p).to_numpy())
    return pd.DataFrame(rows)


def validation_table(directory: Path) -> pd.DataFrame:
    """Sampled attribution against work of known size, one row per contrast.

    For each pair of avwork forkdepth conditions (:data:`CONTRASTS`): the extra CPU
    time of the busier one (rusage user+sys), the extra time sampled (samples x
    period), the extra time sampled under the anon_vma functions, and how much of that
    landed at an interrupt re-enable site; with the extra allocations per fork (perf
    stat) the extra time per extra object.  ``anon_share_of_extra`` (the recovery) is the
    extra time sampled under the anon_vma functions over the extra CPU time: 1 when the
    extra work is all theirs and sampling neither loses nor misplaces any of it, so it
    corrects both (``sampled_over_rusage`` shows the loss alone).
    """
    runs, meta = load(directory)
    sm = sample_summary(directory, runs[runs["workload"] == "validate"])
    if sm.empty:
        raise RmaplabError("the ceiling campaign has no validation runs",
                           hint="rmaplab ceiling --validate K,FORKS,REPEATS")
    sm["sampled_s"] = (sm["samples_kernel"] + sm["samples_user"]) * sm["period_s"]
    sm["anon_s"] = sm["samples_anon"] * sm["period_s"]
    sm["anon_irq_site_s"] = sm["samples_anon_irq_site"] * sm["period_s"]
    cols = ["rusage_cpu", "sampled_s", "anon_s", "anon_irq_site_s"]
    by = sm.groupby("label")[cols]
    mean, var, n = by.mean(), by.var(ddof=1), by.count()
    counts = meta.get("validation_counts", {})
    rows = []
    for busy, base, what in CONTRASTS:
        if busy not in mean.index or base not in mean.index:
            continue
        row: dict[str, Any] = {"contrast": f"{busy} - {base}", "extra_work": what,
                               "runs": int(min(n.loc[busy, "anon_s"], n.loc[base, "anon_s"]))}
        for col, name in (("rusage_cpu", "extra_cpu_s"), ("sampled_s", "extra_sampled_s"),
                          ("anon_s", "extra_anon_s"), ("anon_irq_site_s", "extra_anon_irq_site_s")):
            row[name] = float(mean.loc[busy, col] - mean.loc[base, col])
            row[name + "_se"] = float(np.sqrt(var.loc[busy, col] / n.loc[busy, col]
                                              + var.loc[base, col] / n.loc[base, col]))
        if busy in counts and base in counts:
            forks = counts[busy]["forks"]
            for obj in ("anon_vmas", "avcs"):
                row[f"extra_{obj}"] = forks * (counts[busy][obj] - counts[base][obj])
        row["anon_share_of_extra"] = row["extra_anon_s"] / row["extra_cpu_s"]
        row["sampled_over_rusage"] = row["extra_sampled_s"] / row["extra_cpu_s"]
        rows.append(row)
    return pd.DataFrame(rows)


def corrected_bound(directory: Path, shell: str, jobs: int = 2, level: float = 0.975,
                    contrasts: Iterable[str] | None = None) -> dict[str, Any]:
    """The sampled anon_vma share of sys time, corrected for sampling, with an upper
    bound that carries every input's uncertainty.

    share = A / (D * min(1, R)): A the mean time sampled under the anon_vma functions
    per build (sample runs), D the mean sys of the uninstrumented builds (plain runs), R
    the lower of the validation contrasts' recoveries (:func:`validation_table`: the
    extra time sampled under the anon_vma functions over the extra CPU time by rusage,
    which corrects samples lost as well as samples placed elsewhere), never scaling
    down.  The bound takes A's upper, D's lower and R's lower one-sided bound
    (:mod:`rmaplab.stats.bounds`), each at 1 - (1 - level)/3: by Bonferroni it holds with
    probability at least ``level`` whatever the dependence between them (nominally: each
    piece is a t or Welch bound from a few runs).

    R's lower bound is the lowest of the contrasts' lower bounds, each at the full
    1 - (1 - level)/3 and no split between them: it is below R whenever the bound of the
    contrast with the lowest true recovery is, which has that probability.  Each uses
    that a recovery is not negative, which holds a priori (each busy condition does its
    base's work and more, so neither its extra CPU time nor its extra anon_vma time is
    negative): with it a contrast whose extra CPU time is noisy still bounds its
    recovery from below when its extra anon_vma time is clearly positive.  ``None``
    (with the reason) when a recovery's lower bound is 0 or missing.

    ``contrasts`` ("busy - base" names of :data:`CONTRASTS`) picks the contrasts R is the
    lower of (default: all; fewer can only lower the bound).
    """
    from rmaplab.stats import bounds

    runs, _ = load(directory)
    builds = runs[(runs["workload"] == "build") & (runs["shell"] == shell)]
    den = denominator(builds, shell, jobs)
    plain = builds[(builds["kind"] == "plain") & (builds["jobs"] == jobs)
                   & ~builds["failed"].astype(bool)]
    sm = sample_summary(directory, builds)
    sm = sm[sm["jobs"] == jobs]
    if sm.empty:
        raise RmaplabError(f"no {shell} -j{jobs} sample runs in {directory}",
                           hint="rmaplab ceiling --passes sample records them")
    anon_s = (sm["samples_anon"] * sm["period_s"]).to_numpy()
    val = sample_summary(directory, runs[runs["workload"] == "validate"])
    if val.empty:
        raise RmaplabError(f"the ceiling campaign {directory} has no validation runs",
                           hint="rmaplab ceiling --validate K,FORKS,REPEATS")
    val["anon_s"] = val["samples_anon"] * val["period_s"]
    alpha = 1.0 - level
    each = 1.0 - alpha / 3
    names = [f"{busy} - {base}" for busy, base, _ in CONTRASTS]
    wanted = names if contrasts is None else list(contrasts)
    unknown = [c for c in wanted if c not in names]
    if unknown or not wanted:
        raise RmaplabError(f"unknown validation contrast(s) {unknown or wanted}",
                           hint="one of: " + ", ".join(names))
    recoveries = []
    for busy, base, _ in CONTRASTS:
        if f"{busy} - {base}" not in wanted:
            continue
        b, z = val[val["label"] == busy], val[val["label"] == base]
        if b.empty or z.empty:
            continue
        rb = bounds.contrast_ratio_lower(b["anon_s"], b["rusage_cpu"], z["anon_s"],
                                         z["rusage_cpu"], each, nonnegative=True)
        recoveries.append((f"{busy} - {base}", rb, min(len(b), len(z))))
    if not recoveries:
        raise RmaplabError(f"{directory}: no validation contrast has both conditions")
    a_mean, d_mean = float(anon_s.mean()), den["sys_s"]
    r_point = min(r.estimate for _, r, _ in recoveries)
    a_hi = bounds.mean_upper(anon_s, each)
    d_lo = bounds.mean_lower(plain["sys"].to_numpy(), each)
    lows = [r.lower for _, r, _ in recoveries]
    r_lo = None if any(low is None for low in lows) else min(lows)
    why = None           # why there is no bound
    if r_lo is None:
        why = "; ".join(f"{name}: {r.note}" for name, r, _ in recoveries if r.lower is None)
    elif r_lo <= 0:
        why = f"the recovery's lower bound is {r_lo:.3g}: " + "; ".join(
            f"{name}: {r.note}" for name, r, _ in recoveries if r.lower is not None and r.lower <= 0)
    elif len(plain) < 2:
        why = f"{len(plain)} uninstrumented run(s): no bound on the denominator's mean"
    elif not d_lo > 0:
        why = f"the denominator's lower bound ({d_lo:.3g} s) is not positive"
    elif math.isnan(a_hi):
        why = "one sample run: no bound on its mean"
    return {"shell": shell, "jobs": jobs, "level": level, "level_each": each,
            "sample_runs": len(anon_s), "plain_runs": len(plain),
            "validation_runs_per_side": min(n for _, _, n in recoveries),
            "anon_s": a_mean, "anon_s_upper": a_hi,
            "denominator_s": d_mean, "denominator_s_lower": d_lo,
            "recovery": r_point, "recovery_lower": r_lo,
            "recoveries": {name: (r.estimate, r.lower, r.note) for name, r, _ in recoveries},
            # a recovery estimate that is not positive corrects nothing: no share
            "corrected_pct": (100 * a_mean / (d_mean * min(1.0, r_point)) if r_point > 0
                              else math.nan),
            "bound_pct": None if why else 100 * a_hi / (d_lo * min(1.0, r_lo)),
            "no_bound_because": why}
