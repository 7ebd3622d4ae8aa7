"""The ``rmaplab`` command line.  ``--json`` output is an interface (../DESIGN.md).

One module per group of commands (``*_cmds.py``); each registers its subcommands in
``_registry.COMMANDS`` and checks its arguments with the types in ``_args`` before any
work starts.  :func:`main` is the one place where expected failures become one line
on stderr and exit status 2: usage errors, :class:`RmaplabError`, ``OSError`` on a
user's path, a tool that failed.  Anything else is a bug and tracebacks
(``RMAPLAB_DEBUG=1`` shows the traceback of the expected failures too).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

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

__all__ = ["COMMANDS", "Parser", "build_parser", "main"]

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``rmaplab CMD: error: argument --x: ...``."""

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):
            # argparse reads `--ks -1,4` as two options; say how to write such a value.
            message += " (write a value that starts with '-' as --option=VALUE)"
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


def build_parser() -> Parser:
    parser = Parser(
        prog="rmaplab",
        description="Put the 2019 'reuse mergeable anon_vma as parent when fork' claim on trial: "
                    "timing statistics, a model of mm/rmap.c, live-kernel counts.",
    )
    parser.add_argument("--version", action="version", version=f"rmaplab {__version__}")
    # Not required=True: argparse would then report a missing command before an
    # unknown option (`rmaplab --frob`); main() reports the missing command itself.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    order = ["timings", "compare", "replay", "search", "measure", "trace", "micro", "forkcost",
             "kbuild", "kernel", "sweep", "reproduce", "data"]
    for name in sorted(COMMANDS, key=lambda n: order.index(n) if n in order else len(order)):
        COMMANDS[name](sub)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command's namespace its full name, e.g. 'rmaplab data add'."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(prog=sub.prog)
                _name_commands(sub)


@contextmanager
def _warnings_on_one_line(prog: str) -> Iterator[None]:
    """Show each distinct warning once, as one line, without source excerpts."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = (str(message).strip().splitlines() or [category.__name__])[0]
        if text not in seen:
            seen.add(text)
            print(f"{prog}: warning: {text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
        return f"{where}: {e.strerror or e}"
    if isinstance(e, subprocess.CalledProcessError):
        cmd = e.cmd if isinstance(e.cmd, str) else " ".join(map(str, e.cmd))
        return f"{cmd!r} failed with status {e.returncode}"
    return str(e) or type(e).__name__


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    # A terminated rmaplab unwinds like an interrupted one, so cleanups run (e.g. a
    # UML guest's process group is killed, not left behind).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = build_parser()
    prog = parser.prog
    try:
        with _warnings_on_one_line(prog):
            args, unknown = parser.parse_known_args(argv)
            prog = getattr(args, "prog", parser.prog)
            if unknown:
                print(f"{prog}: error: unrecognized arguments: {' '.join(unknown)} "
                      f"(see {prog} --help)", file=sys.stderr)
                raise SystemExit(USAGE_ERROR)
            if args.command is None:
                parser.error("no command given")
        with _warnings_on_one_line(prog):
            return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`rmaplab ... | head`): stop quietly, flush nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (RmaplabError, OSError, subprocess.CalledProcessError) as e:
        if os.environ.get("RMAPLAB_DEBUG"):
            raise
        print(f"{prog}: error: {_one_line(_describe(e))}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
