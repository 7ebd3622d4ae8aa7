"""Boot the UML policy kernel and run commands in it, counting allocations by call site.

Python API (what ``rmaplab kernel run`` and the differential driver use)::

    from rmaplab.kernel.run import Job, run_batch, run_jobs

    results = run_batch([("v5.4", ["/abs/prog", "arg"]), ("v6.0", ["/abs/prog", "arg"])])
    results[0]["anon_vma_alloc"], results[0]["exit_status"], results[0]["stdout"]

    batch = run_jobs([Job("v5.5", ["/bin/sh", "-c", "make"], cwd="/src")],
                     writable=["/src"], mem="1536M")
    batch.results, batch.boots, batch.seconds

``run_batch(jobs)`` takes ``(policy, argv)`` pairs or :class:`Job` objects and returns
one dict per job, in order.  All jobs run in ONE boot: before each job the guest
writes the job's policy to ``/sys/module/rmap/parameters/reuse_policy``.  A job's
dict holds

    policy, argv, cwd           what was run
    exit_status                 the exit code, -N if killed by signal N, None if the
                                guest died or the command could not be executed
    failed, error               failed is True unless the command exited 0; error says
                                why when the command did not run to an exit
    stdout, stderr              the command's output (text, undecodable bytes replaced)
    anon_vma_alloc ... mm_forks every line of /proc/rmaplab_counters, as the difference
                                after - before the command (see the counters patch);
                                forks without the vfork that started the command
    slab                        {"anon_vma", "anon_vma_chain", "vm_area_struct"}:
                                SLUB_STATS alloc_fastpath + alloc_slowpath differences
    strays                      processes the command left running (killed after it)

Paths: the guest sees the host's file system read-only at the same paths (and at
/host), except /proc, /sys, /dev and /tmp, which are the guest's own
(rmaplab.kernel.guest).  ``argv[0]`` must be an absolute path (the CLI resolves it on
the host's PATH).  Directories in ``writable`` are mounted read-write at their own
path.  Commands see the environment ``PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
HOME=/tmp LANG=C`` plus ``Job.env``.

Counting window: the guest's runner (PID 1, guest/runner.c) reads every counter,
starts the command with vfork()+execve() (its own mm is never copied), waits, reads
again; nothing else runs in the guest.  The difference is therefore exactly what the
command -- its exec, its descendants, their exits -- allocated.  That includes the
exec of argv[0] itself, which ``perf stat``'s count on the host partly misses: compare
differences between runs, not absolute counts, across the two.

If the guest stops during a job (a kernel BUG under an unsafe policy, or ``timeout``
seconds without finishing the batch), that job is reported with ``error`` set (the
console's last lines) and the remaining jobs run in a new boot.  Times inside
UML are not representative of x86 and are never reported as timings; ``Batch.seconds``
is the host's wall time for planning batch sizes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmaplab.errors import RmaplabError
from rmaplab.kernel import guest
from rmaplab.kernel.build import Kernel, ensure
from rmaplab.kernel.source import uml_dir
from rmaplab.model.policies import KERNEL_POLICIES as POLICIES  # the five patched into the kernel

SLAB_CACHES = ("anon_vma", "anon_vma_chain", "vm_area_struct")
DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp",
               "LANG": "C"}
DEFAULT_MEM = "512M"
MAX_JOBS_PER_BOOT = 9999        # the runner's job directories are 0001 .. 9999
# Characters that cannot travel on UML's command line or through /job/mounts.
_UNSAFE = set(" \t\n\"'\\")


@dataclass
class Job:
    policy: str
    argv: list[str]
    cwd: str = "/"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Batch:
    results: list[dict[str, Any]]
    boots: int
    seconds: float
    kernel: Kernel


def _as_job(item: Job | tuple[str, Sequence[str]]) -> Job:
    if isinstance(item, Job):
        return item
    policy, argv = item
    return Job(policy, list(argv))


def check_job(job: Job) -> None:
    """Refuse a job the guest could not run, before anything boots."""
    if job.policy not in POLICIES:
        raise RmaplabError(f"unknown policy {job.policy!r}", hint="one of: " + ", ".join(POLICIES))
    if not job.argv:
        raise RmaplabError("empty command")
    if not job.argv[0].startswith("/"):
        raise RmaplabError(f"{job.argv[0]!r} is not an absolute path")
    for text in (*job.argv, *job.env, *job.env.values(), job.cwd):
        if "\0" in text:
            raise RmaplabError(f"NUL byte in {text!r}")
    if any("=" in k for k in job.env):
        raise RmaplabError(f"bad environment variable name in {sorted(job.env)}")


def check_path(path: str | Path) -> str:
    """A host directory that can be mounted in the guest (absolute, existing, plain)."""
    text = str(path)
    if not os.path.isabs(text) or not os.path.isdir(text):
        raise RmaplabError("not an existing absolute directory", path=text)
    if set(text) & _UNSAFE:
        raise RmaplabError("the guest cannot mount a path with spaces or quotes", path=text)
    return os.path.realpath(text)


def _write_jobs(jobdir: Path, jobs: Sequence[Job], writable: Sequence[str]) -> None:
    for i, job in enumerate(jobs, 1):
        d = jobdir / f"{i:04d}"
        d.mkdir()
        (d / "policy").write_text(job.policy)
        (d / "argv").write_bytes(b"".join(a.encode() + b"\0" for a in job.argv))
        env = {**DEFAULT_ENV, **job.env}
        (d / "env").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
        (d / "cwd").write_text(job.cwd)
    if writable:
        (jobdir / "mounts").write_text("".join(p + "\n" for p in writable))


def _parse_result(text: str, source: str) -> dict[str, Any]:
    """A runner result file: status, strays, the two snapshots -> differences."""
    status: dict[str, Any] = {}
    snaps: dict[str, dict[str, int]] = {"before": {}, "after": {}}
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] in snaps and len(fields) == 1:
            current = snaps[fields[0]]
        elif fields[0] == "status" and len(fields) == 3:
            status["how"], status["value"] = fields[1], fields[2]
        elif fields[0] == "strays" and len(fields) == 2:
            status["strays"] = int(fields[1])
        elif current is not None and fields[0] == "slab" and len(fields) == 4:
            current[f"slab:{fields[1]}:{fields[2]}"] = int(fields[3])
        elif current is not None and len(fields) == 2:
            current[fields[0]] = int(fields[1])
        else:
            raise RmaplabError(f"unexpected line {line!r}", path=source, line=n)
    before, after = snaps["before"], snaps["after"]
    if "how" not in status or not before or before.keys() != after.keys():
        raise RmaplabError("incomplete result file", path=source)
    out: dict[str, Any] = {k: after[k] - before[k] for k in before if not k.startswith("slab:")}
    out["slab"] = {c: sum(after[k] - before[k] for k in before if k.startswith(f"slab:{c}:"))
                   for c in SLAB_CACHES}
    out["strays"] = status.get("strays", 0)
    if "forks" in out:
        out["forks"] -= 1           # the runner's vfork that started the command
    how, value = status["how"], status["value"]
    if how == "exited":
        out["exit_status"], out["error"] = int(value), None
    elif how == "signaled":
        out["exit_status"], out["error"] = -int(value), None
    elif how == "chdir-failed":
        out["exit_status"], out["error"] = None, f"cannot change to the directory: {value}"
    else:
        out["exit_status"], out["error"] = None, f"cannot execute: {value}"
    out["failed"] = out["exit_status"] != 0
    return out


def _read_text(path: Path) -> str:
    return path.read_bytes().decode(errors="replace") if path.exists() else ""


def boot_argv(kernel: Kernel, root: Path, jobdir: Path, umldir: Path, mem: str,
              policy: str) -> list[str]:
    """The UML command line (UML splits its arguments at spaces: none may contain one)."""
    return [str(kernel.path), f"mem={mem}", "rootfstype=hostfs", f"rootflags={root}", "ro",
            "init=/init", "slab_nomerge", "con0=null,fd:1", "con=null", "quiet",
            f"uml_dir={umldir}", f"rmap.reuse_policy={policy}", f"RMAPLAB_JOB={jobdir}"]


def _boot(kernel: Kernel, root: Path, jobs: Sequence[Job], writable: Sequence[str], mem: str,
          timeout: float | None) -> tuple[list[dict[str, Any]], bool, str]:
    """One boot over ``jobs``: the results it produced (a prefix), whether the job
    after them was started, and the console log."""
    work = Path(tempfile.mkdtemp(dir=uml_dir() / "jobs", prefix="batch-"))
    try:
        jobdir, umldir = work / "job", work / "uml"
        jobdir.mkdir()
        umldir.mkdir()
        _write_jobs(jobdir, jobs, writable)
        argv = boot_argv(kernel, root, jobdir, umldir, mem, jobs[0].policy)
        with open(work / "console.log", "wb") as console:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
        log = _read_text(work / "console.log")
        results = []
        for i in range(1, len(jobs) + 1):
            d = jobdir / f"{i:04d}"
            if not (d / "result").exists():
                break
            res = _parse_result((d / "result").read_text(), str(d / "result"))
            res["stdout"] = _read_text(d / "stdout")
            res["stderr"] = _read_text(d / "stderr")
            results.append(res)
        started = (jobdir / f"{len(results) + 1:04d}" / "started").exists()
        error = _read_text(jobdir / "error").strip()
        if error:
            raise RmaplabError(f"the guest's runner failed: {error}")
        if timed_out:
            log += f"\n[rmaplab: no result after {timeout} s: guest killed]"
        return results, started, log
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """UML leaves helper processes in its session: end them all."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_jobs(jobs: Iterable[Job | tuple[str, Sequence[str]]], *, kernel: Kernel | None = None,
             mem: str = DEFAULT_MEM, writable: Sequence[str | Path] = (),
             timeout: float | None = None,
             log: Callable[[str], None] | None = None) -> Batch:
    """Run the jobs in as few boots as possible; see the module docstring."""
    todo = [_as_job(j) for j in jobs]
    if not todo:
        raise RmaplabError("no jobs to run")
    for job in todo:
        check_job(job)
    mounts = [check_path(p) for p in writable]
    for job in todo:
        if set(job.cwd) & _UNSAFE:
            raise RmaplabError("a working directory with spaces or quotes", path=job.cwd)
    if set(str(uml_dir())) & _UNSAFE:
        raise RmaplabError("the guest's files would sit under a path with spaces or quotes",
                           path=uml_dir(), hint="set RMAPLAB_CACHE to a plain path")
    kernel = kernel or ensure(log=log)
    root = guest.ensure_root()
    (uml_dir() / "jobs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    boots = 0
    while len(results) < len(todo):
        pending = todo[len(results):len(results) + MAX_JOBS_PER_BOOT]
        got, started, console = _boot(kernel, root, pending, mounts, mem, timeout)
        boots += 1
        results += got
        if len(got) < len(pending) and not started:
            tail = "\n".join(console.strip().splitlines()[-15:])
            raise RmaplabError(f"the guest did not run its first job:\n{tail}")
        if len(got) < len(pending):
            # The guest died during the next job: record it, go on with a new boot.
            tail = "\n".join(console.strip().splitlines()[-15:])
            results.append({"exit_status": None, "failed": True, "strays": 0,
                            "error": f"the guest stopped during this job:\n{tail}",
                            "stdout": "", "stderr": "", "slab": {}})
            if log:
                log(f"guest stopped in job {len(results)} of {len(todo)}; rebooting")
    for job, res in zip(todo, results, strict=True):
        res.update(policy=job.policy, argv=job.argv, cwd=job.cwd)
    return Batch(results, boots, time.perf_counter() - start, kernel)


def run_batch(jobs: Iterable[Job | tuple[str, Sequence[str]]], **kw) -> list[dict[str, Any]]:
    """Per-job results of :func:`run_jobs` (keyword arguments as there)."""
    return run_jobs(jobs, **kw).results
