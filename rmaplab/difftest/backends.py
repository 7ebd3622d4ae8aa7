"""Where programs run: a backend runs interpreter programs under a policy and counts.

A backend has a ``name``, the ``merge_rule`` of its kernel and whether that kernel
has transparent huge pages (``thp``; the model replays with both), the counter ``keys`` it can tell apart, ``policies()`` it can run, and
``run(programs, policies)`` returning, per policy, one :class:`Outcome` per program
(one call may boot a kernel once for all of them).  Adding one
is a class with these members and a line in :data:`BACKENDS`.

``host``: this machine's kernel (policy ``v6.0``, merge rule ``uncowed``, THP),
counted by perf stat with the tracepoint counters of rmaplab.measure.perf, enabled
and disabled by the interpreter itself through perf's control fifos (so exec and
set-up are outside the window).

``uml``: User-Mode Linux 6.12 kernels with each policy patched in (merge rule
``singular``, no THP: UML cannot select it), through ``rmaplab.kernel.run.run_batch``: the interpreter reads the
guest's /proc/rmaplab_counters at both ends of its window.
"""

from __future__ import annotations

import functools
import os
import platform
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rmaplab.difftest import interpreter
from rmaplab.difftest.compare import HOST_KEYS
from rmaplab.errors import RmaplabError
from rmaplab.measure import perf
from rmaplab.paths import cache_dir

# A run that takes longer than this is stuck (a program runs in milliseconds).
TIMEOUT = 120
# The guest kernel's exact counters (interface with rmaplab.kernel).
GUEST_COUNTERS_FILE = "/proc/rmaplab_counters"

Event = dict[str, Any]


@dataclass
class Outcome:
    """One program's run: counts inside the window, the worker's VMAs, or an error."""

    counts: dict[str, int] | None
    mappings: list[interpreter.Mapping] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class Backend(Protocol):
    name: str
    merge_rule: str
    thp: bool                           # CONFIG_TRANSPARENT_HUGEPAGE (Kernel.thp)
    keys: tuple[str, ...]
    mremap_spans: bool                  # may an mremap range run past its VMA?

    def policies(self) -> tuple[str, ...]: ...

    def describe(self) -> str: ...

    def metadata(self) -> dict[str, Any]: ...

    def run(self, programs: list[list[Event]], policies: Sequence[str]
            ) -> dict[str, list[Outcome]]: ...


def _failure(proc: subprocess.CompletedProcess, what: str) -> str:
    lines = [ln for ln in (proc.stderr or "").splitlines()
             if ln.strip() and not ln.startswith("Events ")]
    return lines[-1].strip() if lines else f"{what} exited with status {proc.returncode}"


class HostBackend:
    """This machine's kernel under perf stat (policy v6.0)."""

    name = "host"
    merge_rule = "uncowed"
    thp = True
    keys = HOST_KEYS
    mremap_spans = True                 # 6.18 (remap_move, 6.17)

    def __init__(self) -> None:
        perf.check()
        self.exe = interpreter.binary()

    def policies(self) -> tuple[str, ...]:
        return ("v6.0",)

    def describe(self) -> str:
        return f"host (Linux {platform.release()})"

    def metadata(self) -> dict[str, Any]:
        return {}

    def run(self, programs: list[list[Event]], policies: Sequence[str]
            ) -> dict[str, list[Outcome]]:
        for policy in policies:
            if policy not in self.policies():
                raise RmaplabError(f"the host runs policy v6.0 only, not {policy!r}",
                                   hint="--backend uml runs every policy")
        with tempfile.TemporaryDirectory(prefix="rmaplab-difftest-") as tmp:
            outcomes = [self._one(events, Path(tmp)) for events in programs]
        return {policy: outcomes for policy in policies}

    def _one(self, events: list[Event], tmp: Path) -> Outcome:
        prog = tmp / "program.txt"
        program = interpreter.encode(events)
        prog.write_text(program.text)
        ctl, ack, out = tmp / "ctl", tmp / "ack", tmp / "perf.csv"
        for fifo in (ctl, ack):
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)
        out.unlink(missing_ok=True)
        argv = perf.stat_argv([str(self.exe), str(prog)], out,
                              options=perf.control_options(ctl, ack))
        env = {**os.environ, "RMAPLAB_PERF_CTL": str(ctl), "RMAPLAB_PERF_ACK": str(ack)}
        start = time.perf_counter()
        # A session of its own: a stuck run is killed with every process it started.
        with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True) as child:
            try:
                stdout, stderr = child.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                return Outcome(None, error=f"timed out after {TIMEOUT} s")
        seconds = time.perf_counter() - start
        proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
        if proc.returncode != 0:
            return Outcome(None, error=interpreter.trace_error(_failure(proc, "perf stat"),
                                                               program), seconds=seconds)
        report = interpreter.parse_output(proc.stdout)
        values = perf.parse(out.read_text(), str(out))
        counts = {k: int(values[k]) for k in perf.COUNT_NAMES}
        counts.update(perf.derived(counts))
        return Outcome(counts, report.mappings, seconds=seconds)


class UmlBackend:
    """User-Mode Linux 6.12 kernels, one per policy (rmaplab kernel build)."""

    name = "uml"
    merge_rule = "singular"
    thp = False                         # no HAVE_ARCH_TRANSPARENT_HUGEPAGE on UML
    mremap_spans = False                # 6.12: an mremap range stays inside one VMA
    # The guest reports more (the finer avc_clone keys too); compared: what both have.
    keys = (*HOST_KEYS, "avc_clone_fork", "avc_clone_split", "avc_clone_merge",
            "avc_clone_copy_vma")

    def __init__(self) -> None:
        from rmaplab.kernel import build
        from rmaplab.kernel import run as kernel_run

        # run_batch would build a missing kernel (many minutes): say so instead.
        kernel = build.cached(build.current_key())
        if kernel is None:
            raise RmaplabError("UML kernel not built: run rmaplab kernel build")
        self.kernel = kernel
        self.run_batch = functools.partial(kernel_run.run_batch, kernel=kernel)
        self.exe = interpreter.binary()

    def policies(self) -> tuple[str, ...]:
        # the policies patched into the UML kernel (rmaplab/kernel/patches), not the
        # model-only ones such as v6.0+4e4a9eb
        from rmaplab.model.policies import KERNEL_POLICIES

        return tuple(KERNEL_POLICIES)

    def describe(self) -> str:
        return f"uml (User-Mode Linux {self.kernel.meta.get('version', '6.12')} policy kernel " \
               f"{self.kernel.key})"

    def metadata(self) -> dict[str, Any]:
        return {"kernel": self.kernel.describe()}

    def run(self, programs: list[list[Event]], policies: Sequence[str]
            ) -> dict[str, list[Outcome]]:
        """Every program under every policy in one run_batch (one boot per policy)."""
        # The guest sees the host's files at the same paths, except /tmp (its own): the
        # programs go to the cache, like the interpreter.
        scratch = cache_dir() / "difftest"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="programs-", dir=scratch) as tmp:
            paths = []
            encoded = [interpreter.encode(events) for events in programs]
            for i, program in enumerate(encoded):
                prog = Path(tmp) / f"program-{i}.txt"
                prog.write_text(program.text)
                paths.append(str(prog))
            jobs = [(policy, [str(self.exe), "-c", GUEST_COUNTERS_FILE, path])
                    for policy in policies for path in paths]
            start = time.perf_counter()
            results = self.run_batch(jobs)
            seconds = (time.perf_counter() - start) / max(1, len(jobs))
        if len(results) != len(jobs):
            raise RmaplabError(f"run_batch returned {len(results)} results for {len(jobs)} jobs")
        n = len(programs)
        outcomes = [self._outcome(r, seconds, encoded[i % n]) for i, r in enumerate(results)]
        return {policy: outcomes[i * n:(i + 1) * n] for i, policy in enumerate(policies)}

    @staticmethod
    def _outcome(result: dict[str, Any], seconds: float,
                 program: interpreter.Program) -> Outcome:
        stdout = result.get("stdout", "")
        if result.get("exit_status") != 0:
            said = [ln for ln in (result.get("stderr", "") + "\n" + stdout).splitlines()
                    if ln.startswith("interp:")]
            error = said[-1] if said else (result.get("error") or
                                           f"interpreter exit status {result.get('exit_status')}")
            return Outcome(None, error=interpreter.trace_error(error, program),
                           seconds=seconds)
        report = interpreter.parse_output(stdout, "<guest>")
        if report.counts is None:
            return Outcome(None, error="the guest printed no counts", seconds=seconds)
        return Outcome(report.counts, report.mappings, seconds=seconds)


BACKENDS = {"host": HostBackend, "uml": UmlBackend}


def get_backend(name: str) -> Backend:
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise RmaplabError(f"unknown backend {name!r}",
                           hint="one of: " + ", ".join(BACKENDS)) from None
    return cls()


__all__ = ["BACKENDS", "Backend", "HostBackend", "Outcome", "UmlBackend", "get_backend"]
