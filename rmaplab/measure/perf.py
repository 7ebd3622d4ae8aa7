"""perf stat with tracepoint counters: what to count, how to run it, how to read it.

Counts are attributed by the kmem tracepoint's ``call_site`` (research/measure.md):
the ``anon_vma_chain`` slab cache is merged with fs_struct and eventpoll_pwq
(CONFIG_SLAB_MERGE_DEFAULT), so AVCs are counted only at the three rmap call sites.
Forks that copy an mm are ``task:task_newtask`` without CLONE_VM (vfork,
posix_spawn and threads share the mm).  Times are perf's tool events
(``duration_time``, ``user_time``, ``system_time``: the workload and its waited-for
children).  Per-task counting misses frees made at exit (perf_event_exit_task runs
before exit_mm), so frees are not counted here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmaplab.errors import RmaplabError

KMEM = "kmem:kmem_cache_alloc"


@dataclass(frozen=True)
class Counter:
    name: str
    event: str
    filter: str | None = None


COUNTERS = (
    Counter("anon_vma_fork", KMEM, 'name == "anon_vma" && call_site.function == anon_vma_fork'),
    Counter("anon_vma_prepare", KMEM,
            'name == "anon_vma" && call_site.function == __anon_vma_prepare'),
    Counter("avc_fork", KMEM, 'name == "anon_vma_chain" && call_site.function == anon_vma_fork'),
    Counter("avc_clone", KMEM, 'name == "anon_vma_chain" && call_site.function == anon_vma_clone'),
    Counter("avc_prepare", KMEM,
            'name == "anon_vma_chain" && call_site.function == __anon_vma_prepare'),
    Counter("vma_alloc", KMEM, 'name == "vm_area_struct"'),
    # CLONE_VM is 0x100: "!(clone_flags & 256)" (perf rejects "(... & 256) == 0").
    Counter("mm_forks", "task:task_newtask", "!(clone_flags & 256)"),
    Counter("forks", "sched:sched_process_fork"),
    Counter("execs", "sched:sched_process_exec"),
)
_CONTROL_NOTES = re.compile(r"Events (?:enabled|disabled)\n?")
TIME_EVENTS = {"duration_time": "real", "user_time": "user", "system_time": "sys"}
COUNT_NAMES = tuple(c.name for c in COUNTERS)


def derived(counts: dict[str, int]) -> dict[str, int]:
    """The totals the model reports, from the per-call-site counts."""
    return {
        "anon_vma_alloc": counts["anon_vma_fork"] + counts["anon_vma_prepare"],
        "avc_alloc": counts["avc_fork"] + counts["avc_clone"] + counts["avc_prepare"],
    }


def perf_binary() -> str:
    path = shutil.which("perf")
    if path is None:
        raise RmaplabError("perf not found", hint="install it: apt-get install linux-perf "
                           "(Debian) or linux-tools-$(uname -r) (Ubuntu)")
    return path


def stat_argv(cmd: list[str], output: Path, counters=COUNTERS,
              options: Sequence[str] = ()) -> list[str]:
    """perf stat of CMD with ``counters`` and the time events; ``options`` go before them."""
    argv = [perf_binary(), "stat", "-x", ",", "--no-big-num", "-o", str(output), *options]
    for c in counters:
        argv += ["-e", c.event]
        if c.filter:
            argv += ["--filter", c.filter]
    argv += ["-e", ",".join(TIME_EVENTS), "--", *cmd]
    return argv


def _tracefs_present() -> bool:
    return any(Path(p, "events").exists() for p in ("/sys/kernel/tracing",
                                                     "/sys/kernel/debug/tracing"))


def diagnose(stderr: str) -> str:
    """Turn perf's complaint into what to do about it."""
    text = stderr.lower()
    if "perf_event_paranoid" in text or "permission" in text or "access to performance" in text:
        return ("perf may not read these events: run as root, or "
                "sysctl kernel.perf_event_paranoid=-1 and make kallsyms readable "
                "(sysctl kernel.kptr_restrict=0)")
    if not _tracefs_present():
        return "tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing"
    if "event syntax error" in text or "unknown tracepoint" in text or "can't access" in text:
        return ("the kernel lacks one of the tracepoints (kmem:kmem_cache_alloc, "
                "task:task_newtask, sched:sched_process_fork/exec) or perf cannot resolve "
                "call_site.function (needs /proc/kallsyms with addresses)")
    if "filter" in text:
        return "the kernel rejected a tracepoint filter (call_site.function needs kallsyms)"
    return "see perf's message above"


def check() -> None:
    """Fail early, with a remedy, if perf cannot count what rmaplab needs here."""
    perf_binary()
    if not _tracefs_present():
        raise RmaplabError("tracefs is not mounted (no /sys/kernel/tracing/events)",
                           hint="mount -t tracefs nodev /sys/kernel/tracing (as root)")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"rmaplab-perf-check-{os.getpid()}.csv"
    try:
        proc = subprocess.run(stat_argv(["true"], out), capture_output=True, text=True)
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), "")
            raise RmaplabError(f"perf stat failed: {first.strip()}", hint=diagnose(proc.stderr))
        parse(out.read_text(), str(out))
    finally:
        out.unlink(missing_ok=True)


def control_options(ctl: Path, ack: Path) -> list[str]:
    """Start with the counters disabled; the workload enables and disables them itself
    through the fifos (it writes "enable"/"disable" to ``ctl`` and reads "ack")."""
    return ["-D", "-1", "--control", f"fifo:{ctl},{ack}"]


def parse(text: str, source: str) -> dict[str, float]:
    """Read perf stat -x, output written by :func:`stat_argv` (same counter order)."""
    # With --control, perf appends its "Events enabled/disabled" notes to the output file.
    text = _CONTROL_NOTES.sub("", text)
    rows = [(n, ln) for n, ln in enumerate(text.splitlines(), 1)
            if ln.strip() and not ln.startswith("#")]
    expected = len(COUNTERS) + len(TIME_EVENTS)
    if len(rows) != expected:
        raise RmaplabError(f"expected {expected} counter lines from perf stat, found {len(rows)}",
                           path=source, hint="a perf error or an interrupted run")
    values: dict[str, float] = {}
    for (i, row), counter in zip(rows, [*COUNTERS, *TIME_EVENTS], strict=True):
        fields = row.split(",")
        value, event = fields[0], fields[2] if len(fields) > 2 else ""
        if isinstance(counter, Counter):
            if event != counter.event:
                raise RmaplabError(f"counter {counter.name} is {event!r}, expected "
                                   f"{counter.event}", path=source, line=i)
            if value.startswith("<"):
                raise RmaplabError(f"perf reported {value} for {counter.name}", path=source,
                                   line=i, hint="the event could not be counted")
            values[counter.name] = int(float(value))
        else:
            metric = TIME_EVENTS[counter]
            if event != counter:
                raise RmaplabError(f"line {i} is {event!r}, expected {counter}", path=source,
                                   line=i)
            # perf 6.1 prints <not counted> for a tool event whose count is zero.
            values[metric] = 0.0 if value == "<not counted>" else float(value) * 1e-9
    return values
