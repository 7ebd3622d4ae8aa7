"""Synthetic kernel builds: process-tree templates fitted to recorded build traces.

A recorded trace (``rmaplab trace -- make ...``) is parsed into a process tree: each
process instance keeps its own events in order and the points where it forked or
spawned children.  A generated build replays the recorded top-level make tree and
re-composes it:

* ``units``: the number of recipes (the shells make runs; each compiles, archives,
  or runs a helper) as a multiple of the recorded build's.  Recipes are grouped by
  the set of programs their process tree runs; a group seen at least
  ``MIN_STRATUM`` times is a kind of work that grows with the build (compiling,
  archiving), and each of its slots becomes floor(units) or ceil(units) recipes
  sampled from the same group.  Rarer recipes (linking vmlinux, version scripts)
  happen once per build and are kept as recorded.
* ``shell``: which recorded build the recipes come from (``sh`` = dash 0.5.12,
  ``bash``, or a recorded ``dash2019`` build);
* ``make_forks``: make fork()s for every child (recipe or ``$(shell ...)``), a copy of
  make's mm, then exec: GNU make 4.0 and 4.1 only.  make 3.82 and older vfork()ed
  (job.c start_job_command, ``child->pid = vfork ()``), 4.0 switched to fork()
  (make 94735f0a, "Remove use of vfork()", 2013), 4.2 went back to vfork()
  (make fd1dd7c3, "[SV 44555] Use vfork() instead of fork() where available", 2016;
  job.c child_execute_job), and 4.3 uses posix_spawn: neither copies make's mm.
  Debian 9 shipped make 4.1, Debian 10 (2019) 4.2.1 (make-dfsg's debian/changelog);
* ``shell_forks``: the recipes' dash fork()s for every external command instead of
  vforking it, as dash did before 0.5.11 (dash e94a964e7dd0, "eval: Add vfork
  support", 2018, first released in 0.5.11): a copy of the shell's mm per command.
  Debian's dash (patch 0004, since 0.5.7-2) also forks the last command of ``sh -c``,
  so this is Debian 10's /bin/sh, dash 0.5.10.2 (rmaplab.measure.dash2019 builds it).
  Only with ``shell = "sh"``: bash forks already;
* ``jobs``: how many of a make's children run at once: their events are interleaved
  round-robin, which matters for reuse only (whether a parent has exited);
* ``seed``: the sampling.

Processes other than make run depth-first (a child's subtree completes before its
parent goes on), as the shells of a build do when they wait for their children.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rmaplab.errors import RmaplabError

Event = dict[str, Any]


@dataclass
class Node:
    pid: int
    program: str | None                        # what it runs after its last exec
    how: str                                   # "spawn" | "fork" | "root"
    by: str | None = None                      # the parent's program when it made this one
    items: list = field(default_factory=list)  # ("ev", event) | ("child", Node)
    _has_make: bool | None = None

    def is_make(self) -> bool:
        return self.program == "make"

    def runs_make(self) -> bool:
        """Whether make runs anywhere in this subtree (then it is structure, not a recipe)."""
        if self._has_make is None:
            self._has_make = self.is_make() or any(
                x.runs_make() for kind, x in self.items if kind == "child")
        return self._has_make


def parse_tree(events: list[Event]) -> Node:
    """The process tree of a recorded trace (the first spawned process is the root)."""
    live: dict[int, Node] = {}
    root: Node | None = None
    for ev in events:
        op, pid = ev["op"], ev["pid"]
        if op == "spawn":
            parent = live.get(ev.get("parent"))
            node = Node(pid, ev.get("comm"), "spawn" if root is not None else "root",
                        parent.program if parent is not None else None)
            if root is None:
                root = node
            elif parent is not None:
                parent.items.append(("child", node))
            else:
                raise RmaplabError(f"spawn of {pid} by unknown parent {ev.get('parent')}",
                                   hint="the trace needs spawn events with 'parent'")
            live[pid] = node
            node.items.append(("ev", ev))
        elif op == "fork":
            parent = live[pid]
            node = Node(ev["child"], parent.program, "fork", parent.program)
            parent.items.append(("child", node))
            live[ev["child"]] = node
            node.items.append(("ev", ev))
        else:
            node = live.get(pid)
            if node is None:
                continue
            node.items.append(("ev", ev))
            if op == "exec" and ev.get("comm"):
                node.program = ev["comm"]
            elif op == "exit":
                del live[pid]
    if root is None:
        raise RmaplabError("trace has no spawn event: not a recorded workload")
    return root


MIN_STRATUM = 5
# What dash is called in the recorded builds (/bin/sh -> dash; SHELL=.../dash).
DASH_PROGRAMS = frozenset({"sh", "dash"})


def signature(node: Node) -> tuple[str, ...]:
    """The set of programs a process tree runs (its exec'd and spawned programs)."""
    progs: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n.program:
            progs.add(n.program)
        for kind, x in n.items:
            if kind == "child":
                stack.append(x)
            elif x["op"] == "exec" and x.get("comm"):
                progs.add(x["comm"])
    return tuple(sorted(progs))


def is_recipe(parent: Node, child: Node) -> bool:
    """A child of make whose subtree runs no make: one recipe (however make started it)."""
    return parent.is_make() and not child.runs_make()


def recipes(root: Node) -> list[Node]:
    """Every recipe of the build: the pool the generator resamples from."""
    out = []
    stack = [root]
    while stack:
        node = stack.pop()
        for kind, x in node.items:
            if kind == "child":
                if is_recipe(node, x):
                    out.append(x)
                else:
                    stack.append(x)
    return out


@dataclass
class Params:
    units: float = 1.0          # recipes, as a multiple of the recorded build's
    shell: str = "sh"
    make_forks: bool = False
    shell_forks: bool = False
    jobs: int = 2
    seed: int = 0
    identity: bool = False      # keep every recorded recipe in place (no sampling): a check


class Generator:
    def __init__(self, make_tree: Node, recipe_pool: list[Node], params: Params) -> None:
        if not recipe_pool:
            raise RmaplabError("no recipes in the recorded trace")
        if params.units <= 0 or params.jobs < 1:
            raise RmaplabError("units must be > 0 and jobs >= 1")
        if params.shell_forks and params.shell != "sh":
            raise RmaplabError(f"shell_forks turns dash's vforks into forks; the {params.shell} "
                               "build has none", hint="use shell_forks with shell sh")
        self.tree = make_tree
        self.p = params
        self.strata: dict[tuple[str, ...], list[Node]] = {}
        for r in recipe_pool:
            self.strata.setdefault(signature(r), []).append(r)
        self.stratum_of = {id(r): sig for sig, rs in self.strata.items() for r in rs}
        self.rng = random.Random(params.seed)
        self.next_pid = 1

    def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def events(self) -> Iterator[Event]:
        pid = self._pid()
        yield {"op": "spawn", "pid": pid, "comm": self.tree.program, "parent": None}
        yield from self._emit(self.tree, pid, None)

    def _emit(self, node: Node, pid: int, parent: int | None) -> Iterator[Event]:
        """Events of one process instance and (depth-first or, for make, interleaved) its
        children, with pids renumbered."""
        remap = {node.pid: pid}
        active: list[Iterator[Event]] = []
        for kind, x in node.items:
            if kind == "child":
                for child in self._children_for(node, x):
                    cpid = self._pid()
                    stream = self._start_child(child, cpid, pid)
                    if node.is_make():
                        active.append(stream)
                        while len(active) >= self.p.jobs:
                            yield from self._round(active)
                    else:
                        yield from stream
                continue
            ev = x
            op = ev["op"]
            if op in ("spawn", "fork") and ev.get("child", ev["pid"]) == node.pid:
                continue                      # the creation event is emitted by the parent
            if op == "exit":
                while active:
                    yield from self._round(active)
            out = dict(ev)
            out["pid"] = remap.get(ev["pid"], pid)
            yield out
            if active and node.is_make():
                yield from self._round(active, once=True)
        while active:
            yield from self._round(active)

    @staticmethod
    def _round(active: list[Iterator[Event]], once: bool = False) -> Iterator[Event]:
        """One event from each active child stream, dropping finished streams."""
        for stream in list(active):
            try:
                yield next(stream)
            except StopIteration:
                active.remove(stream)
            if once:
                return

    def _children_for(self, node: Node, child: Node) -> list[Node]:
        if not is_recipe(node, child) or self.p.identity:
            return [child]
        group = self.strata[self.stratum_of[id(child)]]
        if len(group) < MIN_STRATUM:
            return [child]                    # once-per-build work: as recorded
        whole = math.floor(self.p.units)
        reps = whole + (1 if self.rng.random() < self.p.units - whole else 0)
        return [self.rng.choice(group) for _ in range(reps)]

    def _forks(self, child: Node) -> bool:
        """Whether a recorded spawn (vfork or posix_spawn, no mm copy) is a fork + exec here."""
        if self.p.make_forks and child.by == "make":
            return True
        return self.p.shell_forks and child.by in DASH_PROGRAMS

    def _start_child(self, child: Node, cpid: int, ppid: int) -> Iterator[Event]:
        if child.how == "fork":
            yield {"op": "fork", "pid": ppid, "child": cpid}
        elif self._forks(child):
            spawned = child.items[0][1]
            yield {"op": "fork", "pid": ppid, "child": cpid}
            yield {"op": "exec", "pid": cpid, "comm": spawned.get("comm", child.program)}
        else:
            yield {"op": "spawn", "pid": cpid, "comm": child.program, "parent": ppid}
        yield from self._emit(child, cpid, ppid)


def load_recorded(shell: str, config: str = "tinyconfig") -> tuple[Node, list[Event]]:
    """The process tree of the newest recorded build with this shell and kernel config
    (data/raw/traces, rmaplab.measure.kbuild.trace_label)."""
    from rmaplab import integrity, traces
    from rmaplab.measure.data import latest_named
    from rmaplab.measure.kbuild import trace_label
    from rmaplab.paths import raw_dir

    label = trace_label(config, shell)
    try:
        directory = latest_named("traces", label)
    except RmaplabError:
        raise RmaplabError(f"no recorded build trace for shell {shell!r} in data/raw/traces",
                           hint=f"rmaplab kbuild --config '{config}' --shells {shell} --trace"
                           ) from None
    rel = directory.relative_to(raw_dir()) / "trace.jsonl.gz"
    events = [ev for _, ev in traces.load(integrity.raw_path(str(rel)))]
    return parse_tree(events), events


_CACHE: dict[str, tuple[Node, list[Node]]] = {}


def generator(params: Params, recorded: Path | None = None) -> Generator:
    """A generator for these parameters; the make tree comes from the same recorded build
    as the recipes (the shell decides both)."""
    if params.shell not in _CACHE:
        root, _ = load_recorded(params.shell)
        _CACHE[params.shell] = (root, recipes(root))
    root, pool = _CACHE[params.shell]
    return Generator(root, pool, params)


def generate(params: Params) -> Iterator[tuple[int, Event]]:
    """(line, event) pairs ready for rmaplab.traces.replay."""
    yield from enumerate(generator(params).events(), 1)


def creations_by_program(events: list[Event]) -> dict[tuple[str, str | None], int]:
    """How processes were started, by the creator's program at that moment:
    {("fork" | "spawn", program): count}.  A fork copies the creator's mm; a spawn
    (vfork or posix_spawn, then exec) does not."""
    comm: dict[int, str | None] = {}
    out: dict[tuple[str, str | None], int] = {}
    for ev in events:
        op = ev["op"]
        if op == "spawn":
            if ev.get("parent") is not None:
                key = ("spawn", comm.get(ev["parent"]))
                out[key] = out.get(key, 0) + 1
            comm[ev["pid"]] = ev.get("comm")
        elif op == "fork":
            key = ("fork", comm.get(ev["pid"]))
            out[key] = out.get(key, 0) + 1
            comm[ev["child"]] = comm.get(ev["pid"])
        elif op == "exec":
            comm[ev["pid"]] = ev.get("comm")
    return out


def recurring_recipes(root: Node) -> int:
    """Recipes of kinds seen at least MIN_STRATUM times in this build: what ``units`` scales."""
    sizes: dict[tuple[str, ...], int] = {}
    for r in recipes(root):
        sig = signature(r)
        sizes[sig] = sizes.get(sig, 0) + 1
    return sum(n for n in sizes.values() if n >= MIN_STRATUM)


def units_between(small: Node, large: Node) -> float:
    """The ``units`` at which a build generated from ``small`` runs as many recurring recipes
    as the recorded ``large`` build did (both parsed with parse_tree)."""
    return recurring_recipes(large) / recurring_recipes(small)


COMPARED = ("anon_vma_fork", "anon_vma_prepare", "anon_vma_alloc", "avc_fork", "avc_clone",
            "avc_prepare", "avc_alloc", "vma_alloc", "mm_forks")


def against_recorded(generated: pd.DataFrame, recorded: Mapping[str, float],
                     counters: tuple[str, ...] = COMPARED) -> pd.DataFrame:
    """Generated builds (one row per seed) against a recorded build's kernel counts, counter
    by counter: the mean over seeds, its error and the worst seed's, in percent of the
    recorded count."""
    rows = []
    for c in counters:
        gen = generated[c].astype(float)
        rec = float(recorded[c])
        rows.append({"counter": c, "recorded": rec, "generated": gen.mean(),
                     "generated min": gen.min(), "generated max": gen.max(),
                     "error %": 100 * (gen.mean() - rec) / rec,
                     "worst seed %": 100 * (gen - rec).abs().max() / rec})
    return pd.DataFrame(rows)
