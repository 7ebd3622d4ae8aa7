"""Random multi-process programs in the trace language, valid on every kernel policy.

A program is an event trace: the spawn of process 1 (the interpreter's first
worker), then ``Params.events`` operations drawn with ``Params.weights``: fork,
exit, private mmap (anonymous, or of a memfd ``f0``, ``f1``.. with page offsets
that often continue a neighbour's; sometimes over existing mappings, which it
replaces; some anonymous ones with MAP_STACK, ``Params.stack_share``), munmap,
mprotect, madvise (dontfork, dofork, wipeonfork, keeponfork, dontneed, and on THP
kernels hugepage, nohugepage), mremap (shrink, grow in place, move with or without resizing, across
several VMAs when the size is kept) and page writes and reads.  Every address lies
in an arena of ``Params.pages`` pages at :data:`BASE` in the interpreter's program
region, far from its own VMAs (no merge with them is possible), and every mapping
is at a fixed address, so the model and the kernel lay out alike.  Placement is
biased towards merges: next to VMAs, with their protection, and back to where a
moved VMA's pgoff is linear ("home").

Validity (no operation on a dead process, no mprotect or madvise over a hole, no
resizing mremap across VMAs, no write to a read-only page, no access outside a
mapping) is decided on model kernels that follow the program as it is generated:
one per policy and merge rule (with or without THP, ``Params.thp``: MAP_STACK sets
VM_NOHUGEPAGE only with THP), because where VMAs merge depends on both and a
resizing mremap must stay inside one VMA under each.  A program is thus a
function of the seed, the parameters and the model; recorded runs keep every
program's events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from rmaplab.difftest.compare import INVALID
from rmaplab.difftest.interpreter import REGION_LO
from rmaplab.errors import RmaplabError
from rmaplab.model.machine import Kernel
from rmaplab.model.policies import POLICIES
from rmaplab.model.structs import PAGE_SIZE, Mm, Vma

BASE = REGION_LO
# The merge rules of the kernels programs run on: the host's (6.18) and UML's (6.12).
ORACLE_RULES = ("uncowed", "singular")
PROTS = (("rw", 5), ("r", 2), ("", 1), ("rx", 1), ("rwx", 1))
PROT_NAMES = {0: "", 1: "r", 3: "rw", 5: "rx", 7: "rwx"}      # VM_READ|VM_WRITE|VM_EXEC bits
ADVICE = ("dontfork", "dofork", "wipeonfork", "keeponfork", "dontneed")
# Valid only on kernels with CONFIG_TRANSPARENT_HUGEPAGE (UML 6.12: -EINVAL).
THP_ADVICE = ("hugepage", "nohugepage")
DEFAULT_WEIGHTS = (("touch", 28), ("mmap", 14), ("mprotect", 12), ("fork", 12),
                   ("madvise", 9), ("munmap", 6), ("mremap", 8), ("remap_home", 3),
                   ("map_near_home", 2), ("exit", 6))

Event = dict[str, Any]


@dataclass(frozen=True)
class Params:
    """How big programs are.  ``events`` counts operations after the spawn."""

    events: int = 40
    procs: int = 5             # most processes alive at once
    pages: int = 48            # arena size in pages
    max_map: int = 6           # largest mmap, in pages
    files: int = 2             # memfds for file-backed private mappings (0: none)
    file_share: float = 0.25   # share of mmaps that are file-backed
    replace_share: float = 0.1  # share of mmaps placed over existing mappings
    # mremap ranges may run past their VMA: 6.17+ moves several VMAs when the size is
    # kept and lets a shrink unmap past the VMA.  Off for older kernels (UML 6.12).
    mremap_spans: bool = True
    # The kernel has transparent huge pages (the host; not UML): the oracles model it, and
    # madvise may be hugepage/nohugepage.  MAP_STACK mmaps are valid either way.
    thp: bool = True
    stack_share: float = 0.15  # share of anonymous mmaps with MAP_STACK
    weights: tuple[tuple[str, int], ...] = field(default=DEFAULT_WEIGHTS)

    def __post_init__(self) -> None:
        if self.events < 1 or self.procs < 1 or self.max_map < 1:
            raise RmaplabError("difftest: events, procs and max_map must be at least 1")
        if self.pages < 2 * self.max_map:
            raise RmaplabError("difftest: the arena needs at least 2 * max_map pages")
        unknown = {op for op, _ in self.weights} - {op for op, _ in DEFAULT_WEIGHTS}
        if unknown:
            raise RmaplabError(f"difftest: unknown operation(s) {', '.join(sorted(unknown))}")


class GeneratorError(RmaplabError):
    """No valid program for these parameters, or the model refused an event the generator
    thought valid (a bug in one of them)."""


class _Builder:
    def __init__(self, rng: random.Random, params: Params) -> None:
        self.rng = rng
        self.p = params
        self.oracles = [Kernel(policy, merge_rule=rule, check="off", thp=params.thp)
                        for policy in POLICIES for rule in ORACLE_RULES]
        self.live: list[int] = []
        self.next_pid = 1
        self.events: list[Event] = []

    # -------------------------------------------------------------- state
    @property
    def model(self) -> Kernel:
        return self.oracles[0]       # ranges are picked on one; the others must agree

    def mm(self, pid: int) -> Mm:
        return self.model.mms[pid]

    def apply(self, ev: Event) -> None:
        for k in self.oracles:
            before = [getattr(k.counters, c) for c in INVALID]
            k.apply(ev)
            if [getattr(k.counters, c) for c in INVALID] != before:
                raise GeneratorError(f"{k.policy.name}/{k.merge_rule} refused event "
                                     f"{len(self.events)}: {ev}")
        self.events.append(ev)
        if ev["op"] == "fork":
            self.live.append(ev["child"])
            self.next_pid += 1
        elif ev["op"] == "exit":
            self.live.remove(ev["pid"])

    def page(self, i: int) -> int:
        return BASE + i * PAGE_SIZE

    def free(self, mm: Mm, start: int, end: int) -> bool:
        return not any(v.start < end and v.end > start for v in mm.vmas)

    def pick_vma(self, pid: int, want: str = "") -> Vma | None:
        vmas = [v for v in self.mm(pid).vmas if all(self._has(v, c) for c in want)]
        return self.rng.choice(vmas) if vmas else None

    @staticmethod
    def _has(vma: Vma, c: str) -> bool:
        return bool(vma.flags & {"r": 1, "w": 2, "x": 4}[c])

    def covered_range(self, pid: int) -> tuple[int, int, list[Vma]] | None:
        """A page range inside a run of adjacent VMAs (no hole): start, end, the VMAs."""
        vmas = self.mm(pid).vmas
        if not vmas:
            return None
        i = self.rng.randrange(len(vmas))
        j = i
        while j + 1 < len(vmas) and vmas[j + 1].start == vmas[j].end and self.rng.random() < 0.5:
            j += 1
        lo, hi = vmas[i].start // PAGE_SIZE, vmas[j].end // PAGE_SIZE
        a = self.rng.randrange(lo, hi) if self.rng.random() < 0.5 else lo
        b = self.rng.randrange(a + 1, hi + 1) if self.rng.random() < 0.5 else hi
        run = [v for v in vmas[i:j + 1] if v.start < b * PAGE_SIZE and v.end > a * PAGE_SIZE]
        return a * PAGE_SIZE, b * PAGE_SIZE, run

    # -------------------------------------------------------------- operations
    def op_fork(self) -> Event | None:
        if len(self.live) >= self.p.procs:
            return None
        return {"op": "fork", "pid": self.rng.choice(self.live), "child": self.next_pid}

    def op_exit(self) -> Event | None:
        if len(self.live) < 2:
            return None
        return {"op": "exit", "pid": self.rng.choice(self.live)}

    def op_mmap(self) -> Event | None:
        """A private mapping; half the time next to a VMA (or next to where a moved VMA
        would merge back) with that VMA's protection, so that merges happen."""
        pid = self.rng.choice(self.live)
        mm = self.mm(pid)
        n = self.rng.randint(1, self.p.max_map)
        base = BASE // PAGE_SIZE
        prot = self.rng.choices([p for p, _ in PROTS], [w for _, w in PROTS])[0]
        first = None
        if mm.vmas and self.rng.random() < 0.5:
            v = self.rng.choice(mm.vmas)
            spots = [v.end // PAGE_SIZE, v.start // PAGE_SIZE - n]
            if v.file is None and self.home(v) != v.start // PAGE_SIZE:
                spots += [self.home(v) + v.pages, self.home(v) - n]
            first = self.rng.choice(spots) - base
            if self.rng.random() < 0.7:
                prot = PROT_NAMES[v.flags & 7]
        if first is None or not 0 <= first <= self.p.pages - n:
            first = self.rng.randrange(self.p.pages - n + 1)
        # Mostly into free space; sometimes over mappings (MAP_FIXED replaces them).
        if self.rng.random() >= self.p.replace_share:
            for _ in range(8):
                if self.free(mm, self.page(first), self.page(first + n)):
                    break
                first = self.rng.randrange(self.p.pages - n + 1)
            else:
                return None
        ev: Event = {"op": "mmap", "pid": pid, "start": self.page(first),
                     "end": self.page(first + n), "prot": prot}
        if self.p.files and self.rng.random() < self.p.file_share:
            ev["file"] = f"f{self.rng.randrange(self.p.files)}"
            # Mostly the page's own index, so neighbouring file mappings can merge.
            ev["pgoff"] = first + (0 if self.rng.random() < 0.7 else self.rng.randint(1, 8))
        elif self.rng.random() < self.p.stack_share:
            ev["stack"] = True         # MAP_STACK: VM_NOHUGEPAGE on a THP kernel
        return ev

    def op_munmap(self) -> Event | None:
        pid = self.rng.choice(self.live)
        vma = self.pick_vma(pid)
        if vma is None:
            return None
        lo = max(0, (vma.start - BASE) // PAGE_SIZE - 1)
        a = self.rng.randrange(lo, (vma.end - BASE) // PAGE_SIZE)
        b = self.rng.randint(a + 1, min(a + self.p.max_map + 2, self.p.pages))
        return {"op": "munmap", "pid": pid, "start": self.page(a), "end": self.page(b)}

    def op_mprotect(self) -> Event | None:
        pid = self.rng.choice(self.live)
        rng = self.covered_range(pid)
        if rng is None:
            return None
        prot = self.rng.choices([p for p, _ in PROTS], [w for _, w in PROTS])[0]
        return {"op": "mprotect", "pid": pid, "start": rng[0], "end": rng[1], "prot": prot}

    def op_madvise(self) -> Event | None:
        pid = self.rng.choice(self.live)
        rng = self.covered_range(pid)
        if rng is None:
            return None
        advice = self.rng.choice(ADVICE + THP_ADVICE if self.p.thp else ADVICE)
        if advice == "wipeonfork" and any(v.file is not None for v in rng[2]):
            advice = "keeponfork"     # MADV_WIPEONFORK is -EINVAL on a file mapping
        return {"op": "madvise", "pid": pid, "start": rng[0], "end": rng[1], "advice": advice}

    def in_one_vma(self, pid: int, start: int, end: int, ending: bool = False) -> bool:
        """[start, end) lies in one VMA (and ends it, if ``ending``) under every oracle."""
        for k in self.oracles:
            v = k.find_vma(k.mms[pid], start)
            if v is None or v.end < end or (ending and v.end != end):
                return False
        return True

    def op_mremap(self) -> Event | None:
        """Shrink or grow in place, or move (MREMAP_FIXED) keeping, shrinking or growing
        the size.  6.18 lets a move that keeps the size span several VMAs (remap_move) and
        a shrink drop pages beyond the VMA; a growth must stay inside one VMA."""
        pid = self.rng.choice(self.live)
        faulted = [v for v in self.mm(pid).vmas if v.anon_vma is not None]
        # Half the time a VMA with an anon_vma: moving those keeps their pgoff.
        vma = self.rng.choice(faulted) if faulted and self.rng.random() < 0.5 \
            else self.pick_vma(pid)
        if vma is None:
            return None
        arena_end = BASE // PAGE_SIZE + self.p.pages
        lo, hi = vma.start // PAGE_SIZE, vma.end // PAGE_SIZE
        a = self.rng.randrange(lo, hi)
        kind = self.rng.choice(("shrink", "grow", "move", "move"))
        if kind == "shrink":
            b = self.rng.randint(a + 1, min(arena_end, hi + 2))
            if b - a < 2:
                return None
            new = (a, self.rng.randint(a + 1, b - 1))
        elif kind == "grow":
            b = hi
            room = 0
            while b + room < arena_end and room < self.p.max_map and \
                    self.free(self.mm(pid), (b + room) * PAGE_SIZE, (b + room + 1) * PAGE_SIZE):
                room += 1
            if not room or not self.in_one_vma(pid, a * PAGE_SIZE, b * PAGE_SIZE, ending=True):
                return None
            new = (a, b + self.rng.randint(1, room))
        else:
            if self.rng.random() < 0.3:
                a, b = lo, hi                  # the whole VMA: a move home can then merge
            else:
                b = self.rng.randint(a + 1, min(arena_end, hi + self.p.max_map))
            n = b - a if self.rng.random() < 0.6 else self.rng.randint(1, self.p.max_map)
            if n != b - a:
                # Resizing moves take one VMA: [a, a + n) for a shrink, [a, b) for growth.
                b = min(b, hi)
                if not self.in_one_vma(pid, a * PAGE_SIZE, min(b, a + n) * PAGE_SIZE):
                    return None
            first = self.destination(pid, vma, a, n, b)
            if first is None:
                return None
            new = (first, first + n)
        if not self.p.mremap_spans and not self.in_one_vma(pid, a * PAGE_SIZE, b * PAGE_SIZE):
            return None
        return {"op": "mremap", "pid": pid, "start": a * PAGE_SIZE, "end": b * PAGE_SIZE,
                "new_start": new[0] * PAGE_SIZE, "new_end": new[1] * PAGE_SIZE}

    @staticmethod
    def home(vma: Vma) -> int:
        """The page where vma's pgoff is linear with the address (an anonymous VMA's birth
        place; for the generator's files, BASE + pgoff): a move there can merge."""
        return vma.pgoff if vma.file is None else BASE // PAGE_SIZE + vma.pgoff

    def destination(self, pid: int, vma: Vma, a: int, n: int, b: int) -> int | None:
        """First page of a move's destination outside [a, b): often where the moved range
        can merge (next to a VMA, or back where its pgoff is linear), else anywhere."""
        base, arena_end = BASE // PAGE_SIZE, BASE // PAGE_SIZE + self.p.pages

        def fits(f: int) -> bool:
            return base <= f <= arena_end - n and (f + n <= a or f >= b)

        home = self.home(vma) + (a - vma.start // PAGE_SIZE)
        if fits(home) and self.rng.random() < 0.3:
            return home
        near = [f for v in self.mm(pid).vmas for f in (v.end // PAGE_SIZE,
                                                        v.start // PAGE_SIZE - n) if fits(f)]
        if near and self.rng.random() < 0.5:
            return self.rng.choice(near)
        for _ in range(8):
            first = base + self.rng.randrange(self.p.pages - n + 1)
            if first + n <= a or first >= b:
                return first
        return None

    def op_remap_home(self) -> Event | None:
        """Move a whole VMA back to where its pgoff is linear with the address: the one
        place a faulted VMA can merge with an unfaulted neighbour (copy_vma)."""
        pid = self.rng.choice(self.live)
        away = [v for v in self.mm(pid).vmas if self.home(v) != v.start // PAGE_SIZE]
        if not away:
            return None
        vma = self.rng.choice(away)
        home, n = self.home(vma), vma.pages
        lo, hi = vma.start // PAGE_SIZE, vma.end // PAGE_SIZE
        base = BASE // PAGE_SIZE
        if home < base or home + n > base + self.p.pages or (home < hi and home + n > lo):
            return None
        return {"op": "mremap", "pid": pid, "start": vma.start, "end": vma.end,
                "new_start": home * PAGE_SIZE, "new_end": (home + n) * PAGE_SIZE}

    def op_map_near_home(self) -> Event | None:
        """Map an unfaulted VMA next to a moved faulted VMA's home, with its protection:
        moving that VMA home (remap_home) then merges a faulted range into an unfaulted
        VMA, the case 61f67c230a5e fixed."""
        pid = self.rng.choice(self.live)
        mm = self.mm(pid)
        away = [v for v in mm.vmas if v.file is None and v.anon_vma is not None
                and self.home(v) != v.start // PAGE_SIZE]
        if not away:
            return None
        v = self.rng.choice(away)
        n = self.rng.randint(1, self.p.max_map)
        first = self.rng.choice((self.home(v) + v.pages, self.home(v) - n))
        base = BASE // PAGE_SIZE
        if first < base or first + n > base + self.p.pages or \
                not self.free(mm, first * PAGE_SIZE, (first + n) * PAGE_SIZE):
            return None
        return {"op": "mmap", "pid": pid, "start": first * PAGE_SIZE,
                "end": (first + n) * PAGE_SIZE, "prot": PROT_NAMES[v.flags & 7]}

    def op_touch(self) -> Event | None:
        pid = self.rng.choice(self.live)
        write = self.rng.random() < 0.8
        vma = self.pick_vma(pid, "w" if write else "r")
        if vma is None:
            return None
        addr = self.rng.randrange(vma.start, vma.end, PAGE_SIZE)
        return {"op": "touch", "pid": pid, "addr": addr, "write": write}


def generate(seed: int, params: Params | None = None) -> list[Event]:
    """A random valid program: the same seed and parameters give the same events."""
    params = params or Params()
    b = _Builder(random.Random(seed), params)
    b.apply({"op": "spawn", "pid": 1})
    b.live.append(1)
    b.next_pid = 2
    names = [op for op, _ in params.weights]
    weights = [w for _, w in params.weights]
    attempts = 0
    while len(b.events) - 1 < params.events:
        attempts += 1
        if attempts > 100 * params.events:
            raise GeneratorError(f"seed {seed}: no valid operation found in {attempts} tries")
        ev = getattr(b, f"op_{b.rng.choices(names, weights)[0]}")()
        if ev is not None:
            b.apply(ev)
    return b.events


__all__ = ["BASE", "DEFAULT_WEIGHTS", "ORACLE_RULES", "THP_ADVICE", "GeneratorError", "Params", "generate"]
