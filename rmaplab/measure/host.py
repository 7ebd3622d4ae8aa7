"""What machine and userland a measurement ran on: recorded with every run."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from rmaplab import __version__
from rmaplab.provenance import git_commit


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def _dash_version() -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "dash"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def describe() -> dict:
    uname = platform.uname()
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "kernel_release": uname.release,
        "kernel_version": uname.version,
        "machine": uname.machine,
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "mem_total_kb": next((int(ln.split()[1]) for ln in (_read("/proc/meminfo") or "")
                              .splitlines() if ln.startswith("MemTotal:")), None),
        "perf": _first_line(["perf", "version"]),
        "gcc": _first_line(["gcc", "--version"]),
        "make": _first_line(["make", "--version"]),
        "bash": _first_line(["bash", "--version"]),
        "dash": _dash_version(),
        "sh": os.path.realpath("/bin/sh"),
        "python": platform.python_version(),
        "rmaplab": __version__,
        "rmaplab_commit": git_commit(),
        "perf_event_paranoid": _read("/proc/sys/kernel/perf_event_paranoid"),
        "randomize_va_space": _read("/proc/sys/kernel/randomize_va_space"),
        "thp": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "loadavg": _read("/proc/loadavg"),
    }
