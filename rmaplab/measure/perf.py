"""perf stat with tracepoint counters: what to count, how to run it, how to read it.

Counts are attributed by the kmem tracepoint's ``call_site`` (research/measure.md):
the ``anon_vma_chain`` slab cache is merged with fs_struct and eventpoll_pwq
(CONFIG_SLAB_MERGE_DEFAULT), so AVCs are counted only at the three rmap call sites.
Forks that copy an mm are ``task:task_newtask`` without CLONE_VM (vfork,
posix_spawn and threads share the mm).  The command runs as rmaplab's own child with
perf attached (:func:`run_counted`), so its exit status, wall time and rusage (user,
sys: the command and the children it waited for) are its own, not perf's.  Per-task
counting misses frees made at exit (perf_event_exit_task runs before exit_mm), so
frees are not counted here.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
# perf's tool events for times, in the perf.csv files of runs recorded before rmaplab
# measured the times itself (perf stat -- CMD); parse() still reads them.
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


def stat_attach_argv(pid: int, output: Path, ctl_fd: int, ack_fd: int,
                     counters=COUNTERS) -> list[str]:
    """perf stat attached to ``pid`` (and every task it creates), answering on a control fd."""
    argv = [perf_binary(), "stat", "-x", ",", "--no-big-num", "-o", str(output)]
    for c in counters:
        argv += ["-e", c.event]
        if c.filter:
            argv += ["--filter", c.filter]
    return [*argv, "-p", str(pid), "--control", f"fd:{ctl_fd},{ack_fd}"]


@dataclass(frozen=True)
class Outcome:
    """What became of the command: its own wait status and times, not perf's."""

    status: int        # as subprocess reports it: the exit status, or -N if killed by signal N
    real: float        # seconds from the release of the command to its end (wait4)
    user: float        # rusage of the command and the children it waited for
    sys: float


def _await(fd: int, proc: subprocess.Popen | None, thread: threading.Thread | None,
           timeout: float, what: str) -> bytes:
    """Read what arrives on ``fd`` within ``timeout``; None-safe checks that the process
    or thread we wait on is still there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            return os.read(fd, 64)
        if proc is not None and proc.poll() is not None:
            return b""
        if thread is not None and not thread.is_alive():
            return b""
    raise RmaplabError(f"timed out waiting for {what}")


def run_counted(cmd: list[str], output: Path, log: IO[bytes], cwd: str | Path | None = None,
                env: dict[str, str] | None = None, counters=COUNTERS) -> Outcome:
    """Run CMD with perf stat counting it from its execve to its exit; CMD's output to ``log``.

    ``perf stat -- CMD`` cannot be used: perf reaps CMD itself and 6.1 loses the exit
    status when CMD ends before perf reaches wait4 (its SIGCHLD handler forgets the
    child: status 0, user/sys "not counted", a microsecond "run").  So CMD is our own
    child: forked, it waits on a pipe (between fork and exec, so nothing of it is
    counted but its execve), perf attaches to it with inherited counters, acknowledges
    on its control fd, and only then is CMD released; we wait4 it for its status and
    rusage, then stop perf.  Unlike ``perf stat -- CMD`` (enable-on-exec), the counts
    include what CMD's execve allocates before begin_new_exec() (its new stack VMA and
    argument pages: one VMA, one anon_vma, one AVC), like every child's execve.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()

    def wait_for_release() -> None:      # in the child, between fork and exec
        # Ctrl-C before the exec ends this child as it would end CMD (not with a Python
        # KeyboardInterrupt in the parent's code); after the exec CMD gets the default.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.close(ready_r)
        os.close(go_w)
        os.write(ready_w, b"%d" % os.getpid())
        os.close(ready_w)
        if os.read(go_r, 1) != b"g":
            raise RuntimeError("not released")   # the parent gave up: do not run CMD

    started: dict[str, Any] = {}

    def spawn() -> None:                 # blocks until CMD is exec'd, hence the thread
        try:
            started["proc"] = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=wait_for_release)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            started["error"] = e

    thread = threading.Thread(target=spawn, name="rmaplab-spawn", daemon=True)
    perf_err = tempfile.TemporaryFile()
    stat_proc: subprocess.Popen | None = None
    pid = None
    try:
        thread.start()
        answer = _await(ready_r, None, thread, 30, "the command to start")
        os.close(ready_w)
        ready_w = -1
        if not answer:
            thread.join()
            e = started.get("error")
            raise RmaplabError(f"cannot run {cmd[0]!r}: "
                               f"{getattr(e, 'strerror', None) or e}")
        pid = int(answer)
        stat_proc = subprocess.Popen(stat_attach_argv(pid, output, ctl_r, ack_w, counters),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=perf_err, pass_fds=(ctl_r, ack_w))
        os.write(ctl_w, b"enable\n")
        if not _await(ack_r, stat_proc, None, 60, "perf stat to attach").startswith(b"ack"):
            stat_proc.wait()
            perf_err.seek(0)
            text = perf_err.read().decode(errors="replace")
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "no message")
            raise RmaplabError(f"perf stat failed: {first}", hint=diagnose(text))
        start = time.perf_counter()
        os.write(go_w, b"g")
        thread.join()
        if "error" in started:
            e = started["error"]
            raise RmaplabError(f"cannot run {cmd[0]!r}: {getattr(e, 'strerror', None) or e}")
        _, wait_status, usage = os.wait4(pid, 0)
        real = time.perf_counter() - start
        started["proc"].returncode = os.waitstatus_to_exitcode(wait_status)
        stat_proc.send_signal(signal.SIGINT)   # perf stat -p writes its counts on SIGINT
        try:
            stat_proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise RmaplabError("perf stat did not stop within 60 s of the command's end") from None
        return Outcome(started["proc"].returncode, real, usage.ru_utime, usage.ru_stime)
    finally:
        # Closing go_w first: a child not yet released reads EOF and never execs CMD.
        for fd in (go_w, ready_r, ready_w, go_r, ctl_r, ctl_w, ack_r, ack_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if thread.ident is not None:
            thread.join(timeout=10)       # so that its child, if any, is reaped below
        proc = started.get("proc")
        if proc is not None and proc.returncode is None:
            proc.kill()
            proc.wait()
        if stat_proc is not None and stat_proc.poll() is None:
            stat_proc.kill()
            stat_proc.wait()
        perf_err.close()


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
    with tempfile.TemporaryDirectory(prefix="rmaplab-perf-check-") as tmp:
        out = Path(tmp) / "check.csv"
        with open(os.devnull, "wb") as devnull:
            run_counted(["true"], out, devnull)
        parse(out.read_text(), str(out))


def parse(text: str, source: str) -> dict[str, float]:
    """Read perf stat -x, output written by :func:`stat_attach_argv` (same counter order);
    older files also carry perf's time events after the counters."""
    rows = [(n, ln) for n, ln in enumerate(text.splitlines(), 1)
            if ln.strip() and not ln.startswith("#")]
    if len(rows) not in (len(COUNTERS), len(COUNTERS) + len(TIME_EVENTS)):
        raise RmaplabError(f"expected {len(COUNTERS)} counter lines from perf stat, found "
                           f"{len(rows)}", path=source, hint="a perf error or an interrupted run")
    values: dict[str, float] = {}
    for (i, row), counter in zip(rows, [*COUNTERS, *TIME_EVENTS][:len(rows)], strict=True):
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
