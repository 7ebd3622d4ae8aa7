"""Argument types for every command: each checks one thing before any work starts.

An argparse ``type=`` callable gets the text the user typed and returns the value or
raises ``argparse.ArgumentTypeError``; argparse then prints ``argument --opt: <message>``,
naming the option as written on the command line, and exits 2 (through
:class:`rmaplab.cli.Parser`, on one line).  Checks that need two options at once, or
the content of a file, are done by the command and raise :class:`RmaplabError`.

Paths are checked for what the command will do with them: read a file, read a
directory, write a file (not over a directory or a device; its directory must accept
new files), or write into a directory.  Writability is probed by creating and removing
a temporary entry, because permission bits say nothing for root or read-only mounts.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rmaplab.atomic import writable_error

Invalid = argparse.ArgumentTypeError

# Values that are surely typing mistakes, and would otherwise allocate or loop forever.
MAX_RUNS = 100_000
MAX_SEED = 2**32 - 1          # the widest seed every RNG used here accepts
MAX_LIST = 10_000             # elements of one comma list (ranges expanded)


# -- numbers ---------------------------------------------------------------------------


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An int within [minimum, maximum] (either bound may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""), 10)
        except ValueError:
            raise Invalid(f"not a whole number: {text!r}") from None
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise Invalid(f"must be {_bounds(minimum, maximum)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def real(minimum: float | None = None, maximum: float | None = None, *,
         above: bool = False) -> Callable[[str], float]:
    """A finite float within [minimum, maximum]; ``above``: strictly greater than minimum."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise Invalid(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise Invalid(f"must be a finite number, got {text!r}")
        if (minimum is not None and (value < minimum or above and value == minimum)
                or maximum is not None and value > maximum):
            low = f"> {minimum:g}" if above else f">= {minimum:g}"
            if maximum is None:
                want = low
            elif minimum is None:
                want = f"<= {maximum:g}"
            else:
                want = f"{low} and <= {maximum:g}"
            raise Invalid(f"must be {want}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if maximum is None:
        return f"a whole number >= {minimum}"
    if minimum is None:
        return f"a whole number <= {maximum}"
    return f"a whole number from {minimum} to {maximum}"


positive_int = integer(1)
non_negative_int = integer(0)
runs = integer(1, MAX_RUNS)
warmups = integer(0, MAX_RUNS)
seed = integer(0, MAX_SEED)
finite_float = real()
probability = real(0.0, 0.5, above=True)     # a significance level: (0, 0.5]


# -- comma lists -----------------------------------------------------------------------


def _parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        raise Invalid(f"empty element in {text!r} (values are separated by single commas)")
    return parts


def _no_repeats(values: list[Any], text: str) -> list[Any]:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise Invalid(f"{v!r} is given twice in {text!r}")
        seen.add(v)
    return values


_RANGE = re.compile(r"^(-?\d+)\s*-\s*(-?\d+)$")


def int_list(minimum: int | None = None, maximum: int | None = None,
             ranges: bool = True) -> Callable[[str], list[int]]:
    """Comma-separated ints, each within bounds; with ``ranges``, ``a-b`` (a <= b) too.
    Repeated values are refused: a grid with a value twice measures it twice."""
    one = integer(minimum, maximum)

    def parse(text: str) -> list[int]:
        values: list[int] = []
        for part in _parts(text):
            m = _RANGE.match(part) if ranges else None
            if m is None:
                values.append(one(part))
                continue
            lo, hi = one(m.group(1)), one(m.group(2))
            if lo > hi:
                raise Invalid(f"range {part!r} is inverted (write {hi}-{lo})")
            if hi - lo + len(values) >= MAX_LIST:
                raise Invalid(f"range {part!r} has more than {MAX_LIST} values")
            values.extend(range(lo, hi + 1))
        return _no_repeats(values, text)

    parse.__name__ = "list of integers"
    return parse


def float_list(minimum: float | None = None, maximum: float | None = None, *,
               above: bool = False) -> Callable[[str], list[float]]:
    one = real(minimum, maximum, above=above)

    def parse(text: str) -> list[float]:
        return _no_repeats([one(p) for p in _parts(text)], text)

    parse.__name__ = "list of numbers"
    return parse


def choice_list(choices: Iterable[str], everything: str | None = None
                ) -> Callable[[str], list[str]]:
    """Comma-separated names from ``choices``; ``everything`` (e.g. 'all') means all of them."""
    allowed = list(choices)

    def parse(text: str) -> list[str]:
        if everything is not None and text.strip() == everything:
            return list(allowed)
        values = _parts(text)
        for v in values:
            if v not in allowed:
                raise Invalid(f"unknown value {v!r} (choose from {', '.join(allowed)}"
                              + (f", or {everything}" if everything else "") + ")")
        return _no_repeats(values, text)

    parse.__name__ = "list of names"
    return parse


_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def bool_list(text: str) -> list[bool]:
    """Comma-separated yes/no values."""
    values = []
    for part in _parts(text):
        if part.lower() not in _YES:
            raise Invalid(f"expected yes or no, got {part!r}")
        values.append(_YES[part.lower()])
    return _no_repeats(values, text)


# -- paths -----------------------------------------------------------------------------


def _expand(text: str) -> Path:
    if not text.strip():
        raise Invalid("empty path")
    return Path(os.path.expanduser(text))


def existing_file(text: str) -> Path:
    """A regular file (or a pipe such as <(...)) that can be opened for reading."""
    path = _expand(text)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise Invalid(f"no such file: {text!r}") from None
    except OSError as e:
        raise Invalid(f"cannot use {text!r}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise Invalid(f"{text!r} is a directory, expected a file")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise Invalid(f"{text!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise Invalid(f"cannot read {text!r}: permission denied")
    return path


def nonempty_file(text: str) -> Path:
    path = existing_file(text)
    if stat.S_ISREG(path.stat().st_mode) and path.stat().st_size == 0:
        raise Invalid(f"{text!r} is empty")
    return path


def existing_dir(text: str) -> Path:
    path = _expand(text)
    if not path.exists():
        raise Invalid(f"no such directory: {text!r}")
    if not path.is_dir():
        raise Invalid(f"{text!r} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise Invalid(f"cannot enter {text!r}: permission denied")
    return path


def existing_path(text: str) -> Path:
    """A file or a directory."""
    path = _expand(text)
    if not path.exists():
        raise Invalid(f"no such file or directory: {text!r}")
    return path


def output_file(text: str) -> Path:
    """A file to (re)write atomically: not a directory or device, in a writable directory."""
    path = _expand(text)
    if path.is_dir():
        raise Invalid(f"{text!r} is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise Invalid(f"{text!r} exists and is not a regular file")
    if (why := writable_error(path.parent)) is not None:
        raise Invalid(why)
    return path


def output_dir(text: str) -> Path:
    """A directory to create entries in (created with its parents if missing)."""
    path = _expand(text)
    if path.exists() and not path.is_dir():
        raise Invalid(f"{text!r} exists and is not a directory")
    if (why := writable_error(path)) is not None:
        raise Invalid(why)
    return path


def new_dir(text: str) -> Path:
    """A directory that does not exist yet (results are never written over)."""
    path = _expand(text)
    if path.exists():
        raise Invalid(f"{text!r} already exists; results are never overwritten")
    if (why := writable_error(path.parent)) is not None:
        raise Invalid(why)
    return path


# -- other ------------------------------------------------------------------------------


def label(text: str) -> str:
    """A name used in a directory name: printable, not only punctuation."""
    if not re.search(r"[A-Za-z0-9]", text):
        raise Invalid(f"needs at least one letter or digit, got {text!r}")
    return text


def make_targets(text: str) -> str:
    """Make targets that configure a kernel tree ("tinyconfig kvm_guest.config"): at least
    one, each a plain name (no variable assignments or options)."""
    targets = text.split()
    if not targets:
        raise Invalid("needs at least one make target, e.g. tinyconfig")
    for target in targets:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", target):
            raise Invalid(f"{target!r} is not a make target name")
    return " ".join(targets)


def scheduler_address(text: str, timeout: float = 5.0) -> str:
    """A dask scheduler that answers on TCP now (dask itself retries for 30 s)."""
    url = urlsplit(text if "://" in text else "tcp://" + text)
    if url.scheme not in ("tcp", "tls"):
        raise Invalid(f"unsupported scheme in {text!r} (use tcp://HOST:PORT)")
    try:
        host, port = url.hostname, url.port
    except ValueError:
        raise Invalid(f"bad port in {text!r}") from None
    if not host or port is None:
        raise Invalid(f"expected tcp://HOST:PORT, got {text!r}")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror:
        raise Invalid(f"unknown host {host!r}") from None
    except TimeoutError:
        raise Invalid(f"no answer from {host}:{port} within {timeout:g} s") from None
    except OSError as e:
        raise Invalid(f"cannot reach {host}:{port} ({e.strerror or e})") from None
    return text if "://" in text else "tcp://" + text


# -- policies ---------------------------------------------------------------------------


def policy(text: str) -> str:
    """A policy spec (rmaplab.model.plugins): a built-in name, PATH.py:Class,
    package.module:Class or an installed plug-in's name.  It is loaded here, so a broken
    plug-in stops the command on one line before any work."""
    from rmaplab.errors import RmaplabError
    from rmaplab.model import get_policy

    spec = text.strip()
    if not spec:
        raise Invalid("empty policy")
    try:
        get_policy(spec)
    except RmaplabError as e:
        raise Invalid(str(e)) from None
    return spec


def policy_list(text: str) -> list[str]:
    """Comma-separated policy specs; ``all`` stands for every built-in policy."""
    from rmaplab.model import POLICIES

    parts = _parts(text)
    _no_repeats(parts, text)                  # "all,all", "v6.0,v6.0"
    # "all" stands for the built-ins not named besides it, in either order ("all,v6.0" as
    # "v6.0,all"); a plug-in beside it is added.
    named = {policy(p) for p in parts if p != "all"}
    specs: list[str] = []
    for part in parts:
        if part == "all":
            specs += [p for p in POLICIES if p not in named and p not in specs]
        else:
            specs.append(policy(part))
    return _no_repeats(specs, text)
