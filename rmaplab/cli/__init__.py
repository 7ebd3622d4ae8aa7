"""The ``rmaplab`` command line.  ``--json`` output is an interface (../DESIGN.md).

One module per group of commands (``*_cmds.py``); each registers its subcommands in
``_registry.COMMANDS``.  Errors a user can fix print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from rmaplab import __version__
from rmaplab.cli import (  # noqa: F401 - importing registers the commands
    data_cmds,
    kernel_cmds,
    measure_cmds,
    model_cmds,
    reproduce_cmds,
    sweep_cmds,
    timing_cmds,
)
from rmaplab.cli._registry import COMMANDS
from rmaplab.errors import RmaplabError

__all__ = ["COMMANDS", "build_parser", "main"]

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmaplab",
        description="Put the 2019 'reuse mergeable anon_vma as parent when fork' claim on trial: "
                    "timing statistics, a model of mm/rmap.c, live-kernel counts.",
    )
    parser.add_argument("--version", action="version", version=f"rmaplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    order = ["timings", "compare", "replay", "search", "measure", "trace", "micro", "forkcost",
             "kbuild", "kernel", "sweep", "reproduce", "data"]
    for name in sorted(COMMANDS, key=lambda n: order.index(n) if n in order else len(order)):
        COMMANDS[name](sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A terminated rmaplab unwinds like an interrupted one, so cleanups run (e.g. a
    # UML guest's process group is killed, not left behind).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RmaplabError as e:
        print(f"rmaplab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"rmaplab {args.command}: interrupted", file=sys.stderr)
        return 130
