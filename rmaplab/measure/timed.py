"""Time a command without perf: wall clock and the wait4() rusage of its process tree.

This is what `time` reports (user and sys of the command and every descendant its
parents waited for), so uninstrumented runs are comparable with perf stat's
``user_time``/``system_time`` tool events, which perf also takes from wait4().

``python -m rmaplab.measure.timed --out FILE -- CMD`` runs CMD the same way and
writes ``{"pid", "real", "user", "sys", "exit_status"}`` to FILE: the wrapper under
``perf record -a``, where the recorded pid is the root of the command's process
tree and the times exclude perf's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from rmaplab.errors import RmaplabError


def run(cmd: list[str], cwd: str | Path | None = None, env: dict[str, str] | None = None,
        output: IO[bytes] | int | None = None) -> dict[str, Any]:
    """Run CMD to completion; its real/user/sys seconds, exit status and pid."""
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=output,
                                stderr=subprocess.STDOUT if output is not None else None)
    except FileNotFoundError as e:
        raise RmaplabError(f"cannot run {cmd[0]!r}: {e.strerror}") from None
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
    real = time.perf_counter() - start
    # Popen must not wait for a child that wait4 already reaped.
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"pid": proc.pid, "real": real, "user": usage.ru_utime, "sys": usage.ru_stime,
            "exit_status": proc.returncode}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rmaplab.measure.timed",
                                description="run CMD, write its pid and rusage as JSON")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("no command")
    result = run(cmd)
    args.out.write_text(json.dumps(result) + "\n")
    return result["exit_status"] if result["exit_status"] >= 0 else 128 - result["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
