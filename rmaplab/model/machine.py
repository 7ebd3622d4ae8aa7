"""Processes over the model kernel: spawn, exec, fork, exit, and the memory syscalls.

:class:`Kernel` composes the kernel functions (rmap, vma, memory, fork) with a
policy and the counters; :meth:`Kernel.apply` runs one event of the trace format
(rmaplab.traces) and, unless checking is off, the invariants for what it touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from rmaplab.errors import RmaplabError
from rmaplab.model import invariants
from rmaplab.model.base import PolicyRules
from rmaplab.model.counters import Counters
from rmaplab.model.fork import ForkMixin
from rmaplab.model.memory import FaultMixin
from rmaplab.model.observe import WalkSamples, snapshot
from rmaplab.model.policies import LIVE_POLICY, Policy, get_policy
from rmaplab.model.rmap import RmapMixin
from rmaplab.model.structs import (
    PROT,
    VM_DONTCOPY,
    VM_GROWSDOWN,
    VM_HUGEPAGE,
    VM_NOHUGEPAGE,
    VM_NORESERVE,
    VM_PFNMAP,
    VM_WIPEONFORK,
    AnonVma,
    Mm,
)
from rmaplab.model.vma import MERGE_RULES, VmaMixin

CHECK_MODES: Final = ("incremental", "full", "off")
MADVISE: Final = {
    "dontfork": (VM_DONTCOPY, 0), "dofork": (0, VM_DONTCOPY),
    "wipeonfork": (VM_WIPEONFORK, 0), "keeponfork": (0, VM_WIPEONFORK),
    # hugepage_madvise() (mm/khugepaged.c): each sets its bit and clears the other; then
    # madvise_update_vma() like the advices above.  Only with CONFIG_TRANSPARENT_HUGEPAGE
    # (Kernel.thp); without it madvise_behavior_valid() refuses both with -EINVAL.
    "hugepage": (VM_HUGEPAGE, VM_NOHUGEPAGE), "nohugepage": (VM_NOHUGEPAGE, VM_HUGEPAGE),
}
THP_ADVICE: Final = ("hugepage", "nohugepage")
MMAP_FLAGS: Final = {"growsdown": VM_GROWSDOWN, "noreserve": VM_NORESERVE, "special": VM_PFNMAP}


class EventError(Exception):
    """An event that cannot apply to the current state (the caller adds file and line)."""


@dataclass
class Violation:
    event: int
    invariant: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.event, "invariant": self.invariant, "detail": self.detail}


@dataclass
class ReplayResult:
    policy: str
    merge_rule: str
    events: int
    counters: dict[str, int]
    violations: list[Violation] = field(default_factory=list)
    violation_count: int = 0
    structure: dict[str, float] = field(default_factory=dict)
    walks: WalkSamples | None = None
    thp: bool = True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "merge_rule": self.merge_rule,
                               "thp": self.thp, "events": self.events}
        out.update(self.counters)
        out["structure"] = self.structure
        out["violation_count"] = self.violation_count
        out["violations"] = [v.as_dict() for v in self.violations]
        if self.walks is not None:
            out["walks"] = self.walks.rows()
        return out


# A decoded event: nine fields, (op, pid, a, b, c, d, e, f, s), ints but for ``s`` (a str or
# None); what each means depends on the op (below; unused fields are 0 or None).
# Replaying a recorded build reads the event's fields once per event and policy; from a
# tuple that is an index, from the trace's dict a hashed lookup of a string key in a dict
# of its own (ten keys for an mmap): about a fifth of a replay's time
# (notes/perf-2026-12-03-profile/).  A whole trace is kept packed (:func:`pack`): the same
# fields in 64 bytes per event, no Python object each.
# Op codes in the order Kernel.apply_fields tests them: most frequent first (a recorded
# build: mmap 57%, touch 16%, brk 11%).
OP_MMAP: Final = 0        # a start, b end, c prot bits, d VM_* flag bits, e stack | shared << 1,
#                           f pgoff, s file
OP_TOUCH: Final = 1       # a addr, b write
OP_BRK: Final = 2         # a end, b start + 1 (0: none given)
OP_MPROTECT: Final = 3    # a start, b end, c prot bits
OP_MUNMAP: Final = 4      # a start, b end
OP_EXIT: Final = 5
OP_FORK: Final = 6        # a child
OP_EXEC: Final = 7
OP_SPAWN: Final = 8
OP_MADVISE: Final = 9     # a start, b end, s advice
OP_MREMAP: Final = 10     # a start, b end, c new_start, d new_end, e dontunmap
OP_NAMES: Final = ("mmap", "touch", "brk", "mprotect", "munmap", "exit", "fork", "exec",
                   "spawn", "madvise", "mremap")
OP_CODES: Final = {name: code for code, name in enumerate(OP_NAMES)}


def decode(ev: dict) -> tuple:
    """The decoded form of one trace-format event (a dict as rmaplab.traces.validate
    leaves it): what Kernel.apply_decoded runs.  Optional fields get the trace format's
    defaults; mmap's prot and flag names become VM_* bits."""
    name: str = ev["op"]
    op = OP_CODES.get(name, -1)
    pid: int = ev["pid"]
    if op == OP_MMAP:
        flags = 0
        names = ev.get("flags")
        if names:
            for flag in names:
                flags |= MMAP_FLAGS[flag]
        bits = (1 if ev.get("stack", False) else 0) | (2 if ev.get("shared", False) else 0)
        return (op, pid, ev["start"], ev["end"], PROT[ev["prot"]], flags, bits,
                ev.get("pgoff", 0), ev.get("file"))
    if op == OP_TOUCH:
        return (op, pid, ev["addr"], 1 if ev["write"] else 0, 0, 0, 0, 0, None)
    if op == OP_BRK:
        start = ev.get("start")
        return (op, pid, ev["end"], 0 if start is None else start + 1, 0, 0, 0, 0, None)
    if op == OP_MPROTECT:
        return (op, pid, ev["start"], ev["end"], PROT[ev["prot"]], 0, 0, 0, None)
    if op == OP_MUNMAP:
        return (op, pid, ev["start"], ev["end"], 0, 0, 0, 0, None)
    if op == OP_FORK:
        return (op, pid, ev["child"], 0, 0, 0, 0, 0, None)
    if op == OP_MADVISE:
        return (op, pid, ev["start"], ev["end"], 0, 0, 0, 0, ev["advice"])
    if op == OP_MREMAP:
        return (op, pid, ev["start"], ev["end"], ev["new_start"], ev["new_end"],
                1 if ev.get("dontunmap", False) else 0, 0, None)
    if op < 0:
        raise EventError(f"unknown op {name!r}")
    return (op, pid, 0, 0, 0, 0, 0, 0, None)          # exit, exec, spawn


def decode_all(numbered: Iterable[tuple[int, dict]], lines: list[int],
               events: list[tuple]) -> None:
    """Append each (line, event)'s line to ``lines`` and its decoded event to ``events``
    (compiled: a build trace is a million events).  If one fails, ``lines`` ends with
    its line (and has one more entry than ``events``)."""
    for line, ev in numbered:
        lines.append(line)
        events.append(decode(ev))


# Packed: each decoded event in RECORD bytes, eight little-endian 64-bit words: op | pid << 8,
# then a..f, then s as an index into a table of strings, 1-based (0: None).  Read back by
# Kernel.apply_all_packed, which reads the pid's 32 bits and each field's low 48 (user
# addresses: 47 bits) -- reading all 64 made a replay 12% slower; pack() refuses a
# trace with a value that does not fit.  Written by hand (struct and array make a Python int of every
# field they read): a replay reads each event's bytes in place, so the trace is one bytes
# object -- nothing per event for the collector or for reference counts (a forked worker
# of `replay --policy all` copies no page of it), read from the cache in a hundredth of
# the time of tuples.
RECORD: Final = 64


def pack(events: list[tuple]) -> tuple[bytes, list[str]] | None:
    """Decoded events packed (bytes, strings), or None if a value does not fit what
    apply_all_packed reads (a pid of 2**32 or more, a field of 2**48 or more: the trace
    format allows any non-negative address): keep the tuples."""
    strings: list[str] = []
    data = pack_more(events, strings, {})
    return None if data is None else (data, strings)


def pack_more(events: list[tuple], strings: list[str], index: dict[str, int]) -> bytes | None:
    """pack() for the next events of a trace, packed a batch at a time (a build's decoded
    tuples, all at once, take 250 bytes an event): their strings are looked up in, and
    new ones appended to, the trace's table so far (``index``: string -> its 1-based
    place in ``strings``).  None if a value does not fit."""
    import struct

    record = struct.Struct("<8Q")
    out = bytearray(RECORD * len(events))
    k = 0
    for ev in events:
        s: str | None = ev[8]
        i = 0
        if s is not None:
            i = index.get(s, 0)
            if not i:
                strings.append(s)
                i = index[s] = len(strings)
        pid: int = ev[1]
        op: int = ev[0]
        a: int = ev[2]
        b: int = ev[3]
        c: int = ev[4]
        d: int = ev[5]
        e: int = ev[6]
        f: int = ev[7]
        if not (0 <= op < 256 and 0 <= pid < _PID_LIMIT and 0 <= a < _FIELD_LIMIT
                and 0 <= b < _FIELD_LIMIT and 0 <= c < _FIELD_LIMIT and 0 <= d < _FIELD_LIMIT
                and 0 <= e < _FIELD_LIMIT and 0 <= f < _FIELD_LIMIT):
            return None
        record.pack_into(out, k, op | (pid << 8), a, b, c, d, e, f, i)
        k += RECORD
    return bytes(out)


def unpack(data: bytes, strings: list[str]) -> list[tuple]:
    """The decoded events that pack() packed into (data, strings): its inverse."""
    import struct

    return [(w0 & 0xFF, w0 >> 8, a, b, c, d, e, f, strings[i - 1] if i else None)
            for w0, a, b, c, d, e, f, i in struct.iter_unpack("<8Q", data)]


_PID_LIMIT: Final = 1 << 32
_FIELD_LIMIT: Final = 1 << 48


def _word(data: bytes, k: int) -> int:
    """The low 48 bits of the little-endian word at data[k:k + 8] (pack() leaves the
    rest 0)."""
    return (data[k] | (data[k + 1] << 8) | (data[k + 2] << 16) | (data[k + 3] << 24)
            | (data[k + 4] << 32) | (data[k + 5] << 40))


class Kernel(RmapMixin, VmaMixin, FaultMixin, ForkMixin):
    """The model kernel under one policy.

    ``merge_rule`` defaults to the policy's own (``Policy.merge_rule``: 965f55dea0e3
    for the 2019-era policies, 879bca0a2c4f for ``v6.0``); giving one overrides it.
    ``walks`` records rmap-walk lengths at forks and at the end of forked mms
    (:class:`rmaplab.model.observe.WalkSamples`); off by default, it costs time.
    ``thp``: the kernel has CONFIG_TRANSPARENT_HUGEPAGE (this machine's 6.18 does; the
    User-Mode Linux 6.12 kernels cannot).  It decides two things only: whether an mmap
    with MAP_STACK (``"stack": true``) gets VM_NOHUGEPAGE, and whether madvise hugepage /
    nohugepage change VM_HUGEPAGE / VM_NOHUGEPAGE or fail.  A trace with neither
    replays the same either way.
    """

    def __init__(self, policy: str | Policy = LIVE_POLICY, merge_rule: str | None = None,
                 check: str = "incremental", max_violations: int = 1000,
                 walks: bool = False, thp: bool = True) -> None:
        self.policy = get_policy(policy)
        self.rules = PolicyRules(self.policy)
        if merge_rule is None:
            merge_rule = self.policy.merge_rule
        if merge_rule not in MERGE_RULES:
            raise RmaplabError(f"unknown merge rule {merge_rule!r}",
                               hint="one of: " + ", ".join(MERGE_RULES))
        if check not in CHECK_MODES:
            raise RmaplabError(f"unknown check mode {check!r}", hint=", ".join(CHECK_MODES))
        self.merge_rule = merge_rule
        self.thp = thp
        self.walks = WalkSamples() if walks else None
        self.check = check
        self.counters = Counters()
        self.next_id = 0
        self.mms: dict[int, Mm] = {}
        self.violations: list[Violation] = []
        # What the checks report to, bound once (not a new method object per event).
        self._report: Callable[[str, str], None] = self.violation
        self.violation_count = 0
        self.max_violations = max_violations
        self._seen: set[tuple[str, str]] = set()
        self._roots: set[AnonVma] = set()
        # What the incremental checks look at after an event: whole mms (by pid), and
        # the range [lo, hi) the event worked on of one more mm (check_mm_range).  One
        # slot, not a dict: every event that works on a range works on one mm; a range of
        # a second mm (none today) makes that mm whole-checked (_remember_window).
        self._dirty: set[int] = set()
        self._range_mm: Mm | None = None
        self._range_lo = 0
        self._range_hi = 0
        self.event_index = 0
        # Whether the invariants run after each event: with check="off" nothing records
        # what an event touched.
        self.checking = check != "off"
        self._full_checks = check == "full"
        # The mm _mm() found last (None once it exits or execs: a pid's mm is replaced).
        self._last_mm: Mm | None = None

    # ------------------------------------------------------------ bookkeeping
    def touched(self, anon_vma: AnonVma) -> None:
        if self.checking:
            self._roots.add(anon_vma.root)

    def violation(self, invariant: str, detail: str) -> None:
        key = (invariant, detail)
        if key in self._seen:
            return
        self._seen.add(key)
        self.violation_count += 1
        if len(self.violations) < self.max_violations:
            self.violations.append(Violation(self.event_index, invariant, detail))

    def _mm(self, pid: int) -> Mm:
        mm = self._last_mm
        if mm is not None and mm.pid == pid:
            return mm            # nine events in ten are of the process of the one before
        try:
            mm = self.mms[pid]
        except KeyError:
            raise EventError(f"no process {pid}") from None
        self._last_mm = mm
        return mm

    # ------------------------------------------------------------ processes
    def spawn(self, pid: int) -> None:
        if pid in self.mms:
            raise EventError(f"process {pid} already exists")
        self.mms[pid] = Mm(pid)
        self.counters.spawns += 1
        if self.checking:
            self._dirty.add(pid)

    def exec(self, pid: int) -> None:
        mm = self._mm(pid)
        if self.walks is not None and mm.forked:
            self.walks.end_of_mm(mm)
        self.exit_mmap(mm)
        self.mms[pid] = Mm(pid)
        self._last_mm = None
        self.counters.execs += 1
        if self.checking:
            self._dirty.add(pid)

    def fork(self, pid: int, child: int) -> None:
        parent = self._mm(pid)
        if child in self.mms:
            raise EventError(f"child {child} already exists")   # the caller adds "fork: "
        mm = Mm(child)
        mm.forked = True
        self.mms[child] = mm
        self.dup_mmap(mm, parent)
        self.counters.forks += 1
        self.counters.mm_forks += 1
        if parent.forked:
            self.counters.mm_forks_by_forked += 1
        if self.checking:
            # copy_page_range() shares every anon page of the parent: both mms whole.
            self._dirty.add(pid)
            self._dirty.add(child)

    def exit(self, pid: int) -> None:
        mm = self._mm(pid)
        if self.walks is not None and mm.forked:
            self.walks.end_of_mm(mm)
        self.exit_mmap(mm)
        del self.mms[pid]
        self._last_mm = None
        self._dirty.discard(pid)
        if self._range_mm is mm:
            self._range_mm = None
        self.counters.exits += 1

    # ------------------------------------------------------------ events
    def apply(self, ev: dict) -> None:
        """Run one event of the trace format (a dict, as rmaplab.traces.validate leaves it)."""
        self.apply_decoded(decode(ev))

    def apply_decoded(self, ev: tuple) -> None:
        """Run one decoded event (:func:`decode`)."""
        self.apply_fields(ev[0], ev[1], ev[2], ev[3], ev[4], ev[5], ev[6], ev[7], ev[8])

    def apply_fields(self, op: int, pid: int, a: int, b: int, c: int, d: int, e: int,
                     f: int, s: str | None) -> None:
        """Run one event given as its decoded fields (the layout at OP_MMAP): every event,
        from a dict, a tuple or a packed trace, runs here."""
        if op == OP_MMAP:
            start = a
            end = b
            flags = d
            if self.thp and e & 1:
                # calc_vm_flag_bits() (include/linux/mman.h): _calc_vm_trans(flags,
                # MAP_STACK, VM_NOHUGEPAGE), from c4608d1bf7c6 ("mm: mmap: map MAP_STACK
                # to VM_NOHUGEPAGE", v6.8; 6.7.y), under #ifdef CONFIG_TRANSPARENT_HUGEPAGE since
                # "mm: mmap: map MAP_STACK to VM_NOHUGEPAGE only if THP is enabled" (2025;
                # 7190b3c8bd2b in a mailing-list revlist, id not checked against a tree;
                # the #ifdef is in 6.12.118's include/linux/mman.h).  The flag keeps the VMA from merging with a
                # neighbour (is_mergeable_vma) and from sharing its anon_vma
                # (anon_vma_compatible): both compare vm_flags beyond VM_ACCESS_FLAGS.
                flags |= VM_NOHUGEPAGE
            mm = self._mm(pid)
            self._remember_range(mm, start, end)
            self.do_mmap(mm, start, end, c, s, f, (e & 2) != 0, flags)
        elif op == OP_TOUCH:
            mm = self._mm(pid)
            addr = a
            if self.checking:
                self._remember_window(mm, addr, addr + 1)
            self.handle_mm_fault(mm, addr, b != 0)
        elif op == OP_BRK:
            mm = self._mm(pid)
            brk_end = a
            if mm.brk is not None:
                self._remember_range(mm, min(mm.brk, brk_end), max(mm.brk, brk_end) + 4096)
            elif self.checking:
                self._dirty.add(pid)         # the first brk of an mm places the heap
            self.do_brk(mm, brk_end, None if b == 0 else b - 1)
        elif op == OP_MPROTECT:
            start = a
            end = b
            mm = self._mm(pid)
            self._remember_range(mm, start, end)
            self.do_mprotect(mm, start, end, c)
        elif op == OP_MUNMAP:
            start = a
            end = b
            mm = self._mm(pid)
            self._remember_range(mm, start, end)
            self.do_munmap(mm, start, end)
        elif op == OP_EXIT:
            self.exit(pid)
        elif op == OP_FORK:
            self.fork(pid, a)
        elif op == OP_EXEC:
            self.exec(pid)
        elif op == OP_SPAWN:
            self.spawn(pid)
        elif op == OP_MADVISE:
            start = a
            end = b
            mm = self._mm(pid)
            self._remember_range(mm, start, end)
            advice = s if s is not None else ""
            if advice == "dontneed":
                self.zap_range(mm, start, end)
            elif advice in THP_ADVICE and not self.thp:
                # madvise_behavior_valid(): MADV_HUGEPAGE/NOHUGEPAGE are valid only
                # #ifdef CONFIG_TRANSPARENT_HUGEPAGE; else -EINVAL before any VMA is seen.
                self.counters.syscall_errors += 1
            else:
                set_bits, clear_bits = MADVISE[advice]
                self.do_madvise_flags(mm, start, end, set_bits, clear_bits)
        elif op == OP_MREMAP:
            mm = self._mm(pid)
            self._remember_range(mm, a, b)
            self._remember_range(mm, c, d)
            self.do_mremap(mm, a, b, c, d, e != 0)
        else:
            raise EventError(f"unknown op code {op!r}")
        if self.checking:
            self.check_invariants()
        self.event_index += 1

    def apply_all_decoded(self, events: list[tuple]) -> None:
        """apply_decoded() each event in turn.  If one fails, ``events[self.event_index]``
        is the one (the index counts events applied, so for a Kernel that has applied
        nothing before)."""
        for ev in events:
            self.apply_decoded(ev)

    def apply_all_packed(self, data: bytes, strings: list[str]) -> None:
        """apply_fields() each event of a packed trace (:func:`pack`) in turn: the replay
        loop, compiled with the model.  If one fails, it is the record at
        ``self.event_index`` (as for apply_all_decoded).  Only the words an op uses are
        read."""
        n = len(data)
        k = 0
        while k < n:
            op = data[k]
            pid = (data[k + 1] | (data[k + 2] << 8) | (data[k + 3] << 16)
                   | (data[k + 4] << 24))
            if op == OP_MMAP:
                i = _word(data, k + 56)
                self.apply_fields(op, pid, _word(data, k + 8), _word(data, k + 16),
                                  _word(data, k + 24), _word(data, k + 32),
                                  _word(data, k + 40), _word(data, k + 48),
                                  strings[i - 1] if i else None)
            elif op == OP_TOUCH or op == OP_MUNMAP or op == OP_BRK:
                self.apply_fields(op, pid, _word(data, k + 8), _word(data, k + 16), 0, 0, 0,
                                  0, None)
            elif op == OP_EXIT or op == OP_EXEC or op == OP_SPAWN or op == OP_FORK:
                self.apply_fields(op, pid, _word(data, k + 8), 0, 0, 0, 0, 0, None)
            else:                        # mprotect, madvise, mremap (and unknown codes)
                i = _word(data, k + 56)
                self.apply_fields(op, pid, _word(data, k + 8), _word(data, k + 16),
                                  _word(data, k + 24), _word(data, k + 32),
                                  _word(data, k + 40), _word(data, k + 48),
                                  strings[i - 1] if i else None)
            k += RECORD

    def _remember_window(self, mm: Mm, lo: int, hi: int) -> None:
        """The event works on [lo, hi) of mm: check that part after it."""
        if self._range_mm is None:
            self._range_mm, self._range_lo, self._range_hi = mm, lo, hi
        elif self._range_mm is mm:
            if lo < self._range_lo:
                self._range_lo = lo
            if hi > self._range_hi:
                self._range_hi = hi
        else:
            self._dirty.add(mm.pid)              # a second mm: checked whole

    def _remember_range(self, mm: Mm, start: int, end: int) -> None:
        """The event works on [start, end) of mm: check that part after it.  (The
        families it changes are known without looking: every change to a family goes
        through anon_vma_prepare, anon_vma_clone, anon_vma_fork or unlink_anon_vmas,
        which report the anon_vmas they touch.)"""
        if self.checking:
            self._remember_window(mm, start, end)

    def check_invariants(self) -> None:
        report = self._report
        # Reports come in a deterministic order -- mms by pid, families by their root's
        # id -- never a set's (by address): which violations are kept (max_violations)
        # and which is first must not depend on where objects were allocated.
        dirty = self._dirty
        ranged = self._range_mm
        if self._full_checks:
            for pid in sorted(self.mms):
                invariants.check_mm(self.mms[pid], report)
            roots = {avc.anon_vma.root for mm in self.mms.values() for vma in mm.vmas
                     for avc in vma.chain} | self._roots
        else:
            if not dirty:
                if ranged is not None:                   # most events: one range
                    invariants.check_mm_range(ranged, self._range_lo, self._range_hi, report)
            else:
                if ranged is not None and ranged.pid not in dirty:
                    pids = sorted(dirty | {ranged.pid})
                else:
                    pids = sorted(dirty)
                for pid in pids:
                    mm = self.mms.get(pid)
                    if mm is None:
                        continue
                    if pid in dirty:
                        invariants.check_mm(mm, report)
                    else:
                        invariants.check_mm_range(mm, self._range_lo, self._range_hi, report)
            roots = self._roots
        n = len(roots)
        if n == 1:
            for root in roots:
                invariants.check_family(root, report)
        elif n > 1:
            for root in sorted(roots, key=invariants.by_id):
                invariants.check_family(root, report)
        if n:
            self._roots.clear()
        if dirty:
            dirty.clear()
        self._range_mm = None

    def result(self) -> ReplayResult:
        return ReplayResult(self.policy.name, self.merge_rule, self.event_index,
                            self.counters.as_dict(), list(self.violations),
                            self.violation_count, snapshot(self.mms), self.walks, self.thp)
