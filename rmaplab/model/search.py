"""Search for event sequences that break an invariant, and shrink them.

A small program language over a two-page anonymous region keeps the space
searchable: up to eight processes fork, exit, write a page, or change one page's
protection, at most 30 operations per program.  Two searches use it:

* :func:`find_violation` is **steered**: Hypothesis generates programs, and
  :func:`danger` (``hypothesis.target``) pushes it towards states where an anon_vma
  sits in a VMA's chain without being an ancestor of the VMA's own anon_vma (the
  precondition 2555283eb40d's message describes); writes are left out unless asked
  for (they cannot change the anon_vma topology); a ``prefix`` (e.g. an earlier
  finding) can start every program.
* :func:`random_search` is **unsteered**: each program draws its length uniformly,
  each operation uniformly from all four kinds, and its arguments uniformly; no
  target, no prefix.  It measures how hard a violation is to stumble on.

Either way the first violating program is shrunk (delta debugging) to a minimal
trace.  Nothing here knows the CVE's sequence.
"""

from __future__ import annotations

import itertools
import random
import signal
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Sized
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmaplab import ddmin
from rmaplab.ddmin import renumber
from rmaplab.errors import RmaplabError
from rmaplab.model.machine import EventError, Kernel
from rmaplab.model.plugins import guard, hook_error
from rmaplab.model.policies import Policy, get_policy
from rmaplab.model.structs import AnonVma
from rmaplab.paths import cache_dir

BASE = 0x10000000
PAGES = 2
MAX_PROCS = 8

Op = tuple  # ("fork", i) | ("exit", i) | ("write", i, page) | ("prot", i, page, prot)
Progress = Callable[[int, int, float], None]   # (examples so far, budget, seconds)


def setup_events() -> list[dict[str, Any]]:
    """Process 1 maps the region and writes every page (one anon_vma, the root)."""
    ev: list[dict[str, Any]] = [
        {"op": "spawn", "pid": 1},
        {"op": "mmap", "pid": 1, "start": BASE, "end": BASE + PAGES * 4096, "prot": "rw"},
    ]
    ev += [{"op": "touch", "pid": 1, "addr": BASE + p * 4096, "write": True}
           for p in range(PAGES)]
    return ev


class Interpreter:
    """Turns abstract ops into trace events against live process ids."""

    def __init__(self, live: list[int] | None = None, next_pid: int = 2) -> None:
        self.live = list(live) if live else [1]
        self.next_pid = next_pid

    def event(self, op: Op) -> dict[str, Any] | None:
        kind, i = op[0], op[1]
        pid = self.live[i % len(self.live)]
        if kind == "fork":
            if len(self.live) >= MAX_PROCS:
                return None
            child = self.next_pid
            self.next_pid += 1
            self.live.append(child)
            return {"op": "fork", "pid": pid, "child": child}
        if kind == "exit":
            if len(self.live) == 1:
                return None
            self.live.remove(pid)
            return {"op": "exit", "pid": pid}
        addr = BASE + op[2] * 4096
        if kind == "write":
            return {"op": "touch", "pid": pid, "addr": addr, "write": True}
        return {"op": "mprotect", "pid": pid, "start": addr, "end": addr + 4096, "prot": op[3]}


def to_events(program: list[Op], prefix: list[dict[str, Any]] | None = None
              ) -> list[dict[str, Any]]:
    """The events of ``program`` after the setup (or after ``prefix``, a valid trace)."""
    if prefix is None:
        interp = Interpreter()
        events = setup_events()
    else:
        alive: dict[int, None] = {}
        for ev in prefix:
            if ev["op"] == "spawn":
                alive[ev["pid"]] = None
            elif ev["op"] == "fork":
                alive[ev["child"]] = None
            elif ev["op"] == "exit":
                alive.pop(ev["pid"], None)
        pids = [p for ev in prefix for p in (ev["pid"], ev.get("child", 0))]
        interp = Interpreter(list(alive), max(pids) + 1)
        events = list(prefix)
    for op in program:
        ev = interp.event(op)
        if ev is not None:
            events.append(ev)
    return events


def _is_ancestor(a: AnonVma, b: AnonVma) -> bool:
    while True:
        if a is b:
            return True
        if b.parent is b:
            return False
        b = b.parent


def danger(kernel: Kernel) -> float:
    """How close the state is to a double reuse at the next fork.

    An anon_vma in a VMA's chain that is not an ancestor of the VMA's own anon_vma
    is a leaf the reuse test can pick although VMAs may still use it.  The state is
    more dangerous when such a leaf is reusable now (degree < 2), and most when one
    mm has two VMAs with different anon_vmas and different chains that share it.
    """
    score = 0.0
    for mm in kernel.mms.values():
        leaves: dict[AnonVma, set] = {}
        for vma in mm.vmas:
            own = vma.anon_vma
            if own is None:
                continue
            for avc in vma.chain:
                av = avc.anon_vma
                if av is not own and not _is_ancestor(av, own):
                    score += 1.0 + (2.0 if av.degree < 2 else 0.0)
                    leaves.setdefault(av, set()).add(own)
        for av, owners in leaves.items():
            if len(owners) > 1:
                score += 5.0 + (10.0 if av.degree < 2 else 0.0)
    return score


@contextmanager
def _hypothesis_storage() -> Iterator[None]:
    """Keep Hypothesis's files (it caches constants even without an example database) in
    rmaplab's cache instead of ./.hypothesis/ wherever the search was started."""
    from hypothesis import configuration

    from rmaplab.atomic import writable_error

    home = cache_dir() / "hypothesis"
    if writable_error(home) is not None:
        home = Path(tempfile.gettempdir()) / "rmaplab-hypothesis"
    before = configuration.storage_directory(intent_to_write=False).home_directory
    configuration.set_hypothesis_home_dir(home)
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(before)


@dataclass
class Finding:
    policy: str
    invariant: str
    events: list[dict[str, Any]]
    violation: dict[str, Any]
    examples: int
    seed: int
    seconds: float = 0.0          # wall time until the violation was found (before shrinking)


def replay_events(events: list[dict[str, Any]], policy: str | Policy, check: str = "full"
                  ) -> Kernel | None:
    """The kernel after the events, or None if they are not a valid trace."""
    kernel = Kernel(policy, check=check)
    try:
        for ev in events:
            kernel.apply(ev)
    except EventError:
        return None
    return kernel


def run_program(program: list[Op], policy: str | Policy, check: str = "full",
                prefix: list[dict[str, Any]] | None = None
                ) -> tuple[Kernel, list[dict[str, Any]]]:
    kernel = Kernel(policy, check=check)
    events = to_events(program, prefix)
    for ev in events:
        kernel.apply(ev)
    return kernel, events


def first_violation(kernel: Kernel | None, invariant: str):
    if kernel is None:
        return None
    return next((v for v in kernel.violations if v.invariant == invariant), None)


def shrink(events: list[dict[str, Any]], policy: str | Policy, invariant: str
           ) -> list[dict[str, Any]]:
    """Delta debugging (rmaplab.ddmin) on the concrete events: drop events (or a process's
    fork with its whole life) while the trace stays valid and still breaks the rule; the
    trace is cut after the event that breaks it."""
    def keep(cand: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        v = first_violation(replay_events(cand, policy, "incremental"), invariant)
        return cand[: v.event + 1] if v is not None else None

    return renumber(ddmin.shrink(events, keep, chunked=False))


# Examples Hypothesis gets per seed in the steered search before the next seed starts.
EXAMPLES_PER_SEED = 5_000


def find_violation(policy: str | Policy = "v5.4", invariant: str = "same-anon_vma-same-chain",
                   budget: int = 60_000, examples_per_seed: int = EXAMPLES_PER_SEED, max_ops: int = 30,
                   with_writes: bool = False, prefix: list[dict[str, Any]] | None = None,
                   jobs: int | None = 1, progress: Progress | None = None,
                   first_seed: int = 0) -> Finding | None:
    """Search programs (Hypothesis, steered by :func:`danger`) until one breaks
    ``invariant`` under ``policy``; shrink it.  Seeds ``first_seed``, ``first_seed`` + 1,
    ... are tried in turn, ``examples_per_seed`` each, until ``budget`` examples have
    been spent (so ``budget`` = ``examples_per_seed`` searches one seed alone).  Only fork, exit and one-page
    mprotect are generated unless ``with_writes``: they are the operations that
    change the anon_vma topology; writes only create pages.  With ``prefix`` (a
    trace, e.g. an earlier finding), programs continue it instead of starting afresh.
    ``policy`` is a built-in name or a plug-in (a spec or a Policy); an exception
    inside a plug-in's hook stops the search with an RmaplabError naming it.
    ``jobs``: seeds searched at once in worker processes (None: one per CPU); the
    finding is the one a search of one seed at a time makes (:func:`_search`).
    ``progress(examples, budget, seconds)`` is called after each seed that found nothing.
    """
    policy = get_policy(policy)
    with guard(policy):
        return _search(policy, invariant, budget, examples_per_seed, max_ops, with_writes, prefix,
                       jobs, progress, first_seed)


def _search(policy: Policy, invariant: str, budget: int, examples_per_seed: int, max_ops: int,
            with_writes: bool, prefix: list[dict[str, Any]] | None, jobs: int | None,
            progress: Progress | None = None, first_seed: int = 0) -> Finding | None:
    """Seeds first_seed, first_seed + 1, ... in turn, each given ``examples_per_seed`` or what is left of the
    budget.  With several jobs the next seeds run ahead, planned on the assumption that
    a seed which finds nothing spends all it was given (Hypothesis may stop short): the
    results are taken in seed order, and where a seed spent less, the seeds after it are
    planned and run again.  So the finding -- seed, examples, events -- is the one a
    search of one seed at a time makes; only ``seconds`` (to the finding) is shorter."""
    task = {"policy": policy, "invariant": invariant, "max_ops": max_ops,
            "with_writes": with_writes, "prefix": prefix}
    spent = 0
    seed = first_seed
    start = time.perf_counter()
    with _hypothesis_storage():
        while spent < budget:
            plan: list[tuple[int, int]] = []                 # (seed, examples) from here
            left = budget - spent
            while left > 0:
                plan.append((seed + len(plan), min(examples_per_seed, left)))
                left -= plan[-1][1]
            replanned = False
            hit = None
            with closing(ordered(_probe_seed, plan, task, jobs)) as results:
                for (k, n), (count, events) in zip(plan, results, strict=True):
                    if events is not None:
                        hit = (k, spent + count, events, time.perf_counter() - start)
                        break
                    spent += count
                    seed = k + 1
                    if progress is not None:
                        progress(spent, budget, time.perf_counter() - start)
                    if count != n:              # stopped short: the plan no longer holds
                        replanned = True
                        break
            if hit is not None:
                k, examples, events, seconds = hit
                shrunk = shrink(events, policy, invariant)
                violation = first_violation(replay_events(shrunk, policy), invariant)
                return Finding(policy.name, invariant, shrunk, violation.as_dict(), examples,
                               k, seconds)
            if not replanned:
                break
    return None


def programs(with_writes: bool, max_ops: int) -> Any:
    """The steered search's Hypothesis strategy: lists of up to ``max_ops`` fork, exit and
    one-page mprotect operations (and writes, ``with_writes``), as run_program takes them."""
    from hypothesis import strategies as st

    idx = st.integers(0, MAX_PROCS - 1)
    choices = [
        st.tuples(st.just("fork"), idx),
        st.tuples(st.just("exit"), idx),
        st.tuples(st.just("prot"), idx, st.integers(0, PAGES - 1), st.sampled_from(["r", "rw"])),
    ]
    if with_writes:
        choices.append(st.tuples(st.just("write"), idx, st.integers(0, PAGES - 1)))
    return st.lists(st.one_of(*choices), max_size=max_ops)


def _probe_seed(task: dict[str, Any], seed: int, max_examples: int
                ) -> tuple[int, list[dict[str, Any]] | None]:
    """One seed of the steered search: (examples run, the events of the first program
    that broke the invariant, cut after the violating event, or None)."""
    from hypothesis import HealthCheck, Phase, given, settings, target
    from hypothesis import seed as hseed

    policy, invariant, prefix = task["policy"], task["invariant"], task["prefix"]

    class Found(Exception):
        pass

    state: dict[str, Any] = {"count": 0}

    def stop() -> None:
        # Found is raised here only, never inside an except block: Hypothesis checks that a
        # re-run of a failing example fails at the same place.
        raise Found

    @given(program=programs(task["with_writes"], task["max_ops"]))
    def probe(program):
        # After the first violation Hypothesis still runs programs: the failing one again
        # to report it, and others it has seen.  Each gets its honest outcome (a program
        # that passed must pass again, or Hypothesis raises FlakyFailure -- as it did at
        # v5.4 seed 8 when every call after the hit failed), but none is counted, and the
        # first hit's events are kept.
        if "unexpected" in state:
            raise state["unexpected"]      # a failure of the model itself, raised again
        first = "events" not in state and "error" not in state
        if first:
            state["count"] += 1
        error = None
        try:
            kernel, events = run_program(program, policy, check="incremental", prefix=prefix)
        except (Exception, SystemExit) as e:
            # A plug-in's own failure is not a finding: stop at once, do not shrink it.
            error = hook_error(e, policy)
            if error is None:
                state["unexpected"] = e
                raise
        if error is not None:
            state.setdefault("error", error)
            stop()
        target(danger(kernel), label="non-ancestor anon_vmas in chains")
        hit = first_violation(kernel, invariant)
        if hit is not None:
            if first:
                state["events"] = events[: hit.event + 1]
            stop()

    # The seed ends at its first violation, and `count` is the number of programs run up
    # to and including it.  Without the shrink phase and with report_multiple_bugs off,
    # Hypothesis stops generating at the first failure (ConjectureRunner.
    # should_generate_more); with them, it went on generating for up to 10 s of wall time
    # and then shrank for up to 300 s, all counted -- so the count, and the program handed
    # to shrink(), depended on the machine's load.  shrink() (ddmin, deterministic) does
    # the shrinking instead.
    run = hseed(seed)(settings(
        max_examples=max_examples, deadline=None, database=None,
        phases=[Phase.generate, Phase.target], report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck))(probe))
    try:
        run()
    except Found:
        pass
    if state.get("error") is not None:
        raise state["error"]
    return state["count"], state.get("events")


# What the workers of ordered() run, set before they are forked: they inherit it (a
# plug-in policy included) instead of receiving it pickled.
_TASK: dict[str, Any] | None = None


def _worker(conn: Any, parent_ends: list[Any]) -> None:
    """A worker of ordered(): (fn, args) in, (True, result) or (False, exception) out,
    until None or the parent goes away.  One pipe per worker and no threads or shared
    locks (multiprocessing.Pool has both: its terminate() could wait forever for a worker
    that unwound on the command line's SIGTERM handler); the parent kills it when done."""
    assert _TASK is not None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C: the parent stops, and kills this
    # The parent's ends of this and earlier workers' pipes came along with fork: closed,
    # so that a parent killed outright ends the pipe (EOF) and this worker with it.
    for end in parent_ends:
        end.close()
    while True:
        try:
            call = conn.recv()
        except (EOFError, OSError):
            return
        if call is None:
            return
        fn, args = call
        try:
            with guard(_TASK["policy"]):
                out = (True, fn(_TASK, *args))
        except Exception as e:
            out = (False, e)
        try:
            conn.send(out)
        except OSError:
            return                                # the parent is gone
        except Exception as e:                    # an exception that does not pickle
            conn.send((False, RuntimeError(f"{type(out[1]).__name__}: {out[1]} ({e})")))


def ordered(fn: Callable[..., Any], calls: Iterable[tuple], task: dict[str, Any],
            jobs: int | None = 1) -> Generator[Any, None, None]:
    """``fn(task, *args)`` for each args of ``calls``, yielded in order.  With more than
    one job (None: one per CPU) the calls run in forked worker processes, call i in worker
    i mod jobs, each worker one call ahead; when the caller stops reading, the workers are
    killed.  One job, or no fork on this platform: in this process, one call at a time,
    each only when the caller asks for it."""
    import multiprocessing
    import os

    global _TASK
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(calls, Sized):
        jobs = min(jobs, len(calls))          # no idle workers (--jobs 256 for one seed)
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for args in calls:
            yield fn(task, *args)
        return
    if _TASK is not None:
        raise RuntimeError("ordered() does not nest")
    ctx = multiprocessing.get_context("fork")
    workers = []
    try:
        _TASK = task
        try:
            for _ in range(jobs):
                mine, theirs = ctx.Pipe()
                parent_ends = [end for _, end in workers] + [mine]
                proc = ctx.Process(target=_worker, args=(theirs, parent_ends), daemon=True)
                workers.append((proc, mine))
                proc.start()
                theirs.close()
        finally:
            _TASK = None                          # the workers have their copy
        todo = iter(calls)
        sent = 0
        for _, conn in workers:                   # one call each to start
            call = next(todo, None)
            if call is None:
                break
            conn.send((fn, call))
            sent += 1
        for i in itertools.count():
            if i == sent:
                return
            proc, conn = workers[i % jobs]
            try:
                ok, out = conn.recv()
            except EOFError:
                proc.join(5)
                # An RmaplabError: not taken for a plug-in's failure by guard().
                raise RmaplabError(f"search worker {proc.pid} died (exit status "
                                   f"{proc.exitcode})",
                                   hint="-9 is SIGKILL, e.g. from the kernel's OOM killer; "
                                        "try --jobs 1") from None
            call = next(todo, None)
            if call is not None:
                conn.send((fn, call))             # its next call: i + jobs
                sent += 1
            if not ok:
                raise out
            yield out
    finally:
        for proc, conn in workers:
            if proc.pid is not None:              # started
                proc.kill()
                proc.join()
            conn.close()


def random_program(rng: random.Random, max_ops: int = 30) -> list[Op]:
    """Uniform choices throughout: length, operation kind, process, page, protection."""
    program: list[Op] = []
    for _ in range(rng.randint(1, max_ops)):
        kind = rng.choice(("fork", "exit", "write", "prot"))
        i = rng.randrange(MAX_PROCS)
        if kind in ("fork", "exit"):
            program.append((kind, i))
        elif kind == "write":
            program.append((kind, i, rng.randrange(PAGES)))
        else:
            program.append((kind, i, rng.randrange(PAGES), rng.choice(("r", "rw"))))
    return program


def random_search(policy: str | Policy, invariant: str = "same-anon_vma-same-chain",
                  budget: int = 100_000, seed: int = 0, max_ops: int = 30,
                  jobs: int | None = 1, progress: Progress | None = None) -> Finding | None:
    """Unsteered search: independent uniform random programs until one breaks
    ``invariant`` under ``policy`` or ``budget`` programs were tried; shrink it.
    ``policy`` as for :func:`find_violation`.  The programs come in batches of ``BATCH``,
    batch k drawn from its own generator (:func:`batch_rng`), so they are the same
    whoever draws them; ``jobs`` worker processes (None: one per CPU) draw and run the
    batches, and the first program that breaks the invariant, in batch order, wins -- as
    with one job.  ``progress(programs, budget, seconds)`` is called after each batch
    that found nothing."""
    policy = get_policy(policy)
    with guard(policy):
        return _random_search(policy, invariant, budget, seed, max_ops, jobs, progress)


# Programs per batch a worker runs (about a second's work at most): batches are how far
# the workers may run past the first program that breaks the invariant.
BATCH = 250


class Batches(Sequence[tuple[int, int]]):
    """The (first program, size) batches of a budget, made when asked for: a list of them
    for --budget 1e9 (four million tuples) took 435 MB before the first program ran."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __len__(self) -> int:
        return -(-self.budget // BATCH)

    def __getitem__(self, k):                    # type: ignore[override]  (no slices)
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        first = k * BATCH
        return first, min(BATCH, self.budget - first)


def batch_rng(seed: int, batch: int) -> random.Random:
    """The generator of the unsteered search's batch ``batch`` under ``seed``: one per
    batch (seeded from a string, which Python hashes with SHA-512 -- the same on every
    version), so workers draw their batches themselves.  (Until 2026-12-03 the parent drew
    every program from one generator, and on two CPUs its drawing took a core's share.)"""
    return random.Random(f"rmaplab unsteered search: seed {seed}, batch {batch}")


def _random_search(policy: Policy, invariant: str, budget: int, seed: int, max_ops: int,
                   jobs: int | None, progress: Progress | None = None) -> Finding | None:
    start = time.perf_counter()
    plan = Batches(budget)
    task = {"policy": policy, "invariant": invariant, "seed": seed, "max_ops": max_ops}
    hit = None
    with closing(ordered(_run_batch, plan, task, jobs)) as results:
        for first, (i, events) in results:
            if events is not None:
                hit = (first + i + 1, events, time.perf_counter() - start)
                break
            if progress is not None:
                progress(first + i, budget, time.perf_counter() - start)
    if hit is None:
        return None
    examples, events, seconds = hit
    shrunk = shrink(events, policy, invariant)
    violation = first_violation(replay_events(shrunk, policy), invariant)
    return Finding(policy.name, invariant, shrunk, violation.as_dict(), examples, seed, seconds)


def random_violators(policy: str | Policy, invariant: str = "same-anon_vma-same-chain",
                     budget: int = 100_000, seed: int = 0, max_ops: int = 30,
                     jobs: int | None = 1, progress: Progress | None = None) -> list[int]:
    """Every program of the unsteered search's sequence (``seed``, ``budget``) that breaks
    ``invariant`` under ``policy``: their numbers, counting from 1 (the first is where
    :func:`random_search` stops).  A seed draws the same programs under every policy, so
    two policies' lists compare program by program."""
    policy = get_policy(policy)
    plan = Batches(budget)
    task = {"policy": policy, "invariant": invariant, "seed": seed, "max_ops": max_ops}
    start = time.perf_counter()
    out: list[int] = []
    with guard(policy), closing(ordered(_batch_violators, plan, task, jobs)) as results:
        for (first, size), found in zip(plan, results, strict=True):
            out += found
            if progress is not None:
                progress(first + size, budget, time.perf_counter() - start)
    return out


def _batch_violators(task: dict[str, Any], first: int, size: int) -> list[int]:
    """The numbers (from 1) of the programs of the batch at ``first`` that break the
    invariant."""
    rng = batch_rng(task["seed"], first // BATCH)
    out = []
    for i in range(size):
        kernel, _ = run_program(random_program(rng, task["max_ops"]), task["policy"],
                                check="incremental")
        if first_violation(kernel, task["invariant"]) is not None:
            out.append(first + i + 1)
    return out


def _run_batch(task: dict[str, Any], first: int, size: int
               ) -> tuple[int, tuple[int, list[dict[str, Any]] | None]]:
    """Draw and run the batch starting at program ``first``: (first, (index in the batch,
    events cut after the violation)) of the first program that breaks the invariant;
    (first, (size, None)) if none does."""
    rng = batch_rng(task["seed"], first // BATCH)
    for i in range(size):
        program = random_program(rng, task["max_ops"])
        kernel, events = run_program(program, task["policy"], check="incremental")
        hit = first_violation(kernel, task["invariant"])
        if hit is not None:
            return first, (i, events[: hit.event + 1])
    return first, (size, None)
