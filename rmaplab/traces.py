"""Event traces: JSON Lines, one event per line (the format of ../DESIGN.md).

Each event is an object with ``op`` and ``pid``; addresses are bytes, as ints or
"0x.." strings; the page size is 4096.  Ops and their fields:

=========  =====================================================================
spawn      pid, [comm, parent]          new process with an empty mm (also posix_spawn/vfork+exec;
                                        parent: the process that spawned it, informative)
exec       pid, [comm]                  drop the mm, start empty (comm: the program, informative)
fork       pid, child                   dup_mmap: a fork that copies the mm
exit       pid
mmap       pid, start, end, prot, [file, pgoff, shared, flags, stack]
                                        prot "", r, rw, rx, rwx; pgoff in pages;
                                        flags: growsdown, noreserve, special (vdso/vvar);
                                        stack: true if mmap had MAP_STACK (absent: false;
                                        on a THP kernel the VMA gets VM_NOHUGEPAGE)
munmap     pid, start, end
mprotect   pid, start, end, prot
brk        pid, end, [start]            heap end; the first brk sets the heap base
                                        (``start`` if given, else ``end``: an empty heap)
madvise    pid, start, end, advice      dontfork, dofork, wipeonfork, keeponfork, dontneed,
                                        hugepage, nohugepage (THP kernels; else -EINVAL)
touch      pid, addr, write             a page fault
mremap     pid, start, end, new_start, new_end, [dontunmap]
                                        (extension) resize in place (new_start == start)
                                        or move (MREMAP_MAYMOVE|MREMAP_FIXED; dontunmap:
                                        MREMAP_DONTUNMAP, the source stays mapped)
=========  =====================================================================

Lines starting with ``#`` and blank lines are comments.  Anything else that is not
a valid event is an error naming the line: nothing is skipped silently.
"""

from __future__ import annotations

import array
import contextlib
import gc
import gzip
import hashlib
import io
import itertools
import json
import os
import pickle
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

# orjson parses trace lines about 3x faster than json (a build trace is 500k lines).
import orjson

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.model.machine import MADVISE, MMAP_FLAGS
from rmaplab.model.policies import Policy
from rmaplab.model.structs import PAGE_SIZE, PROT
from rmaplab.paths import cache_dir

PROTS = ("", "r", "rw", "rx", "rwx")
ADVICE = (*MADVISE, "dontneed")
# op -> (required fields, optional fields with defaults)
SCHEMA: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "spawn": ((), {"comm": None, "parent": None}),
    "exec": ((), {"comm": None}),
    "fork": (("child",), {}),
    "exit": ((), {}),
    "mmap": (("start", "end", "prot"), {"file": None, "pgoff": 0, "shared": False, "flags": [],
                                       "stack": False}),
    "munmap": (("start", "end"), {}),
    "mprotect": (("start", "end", "prot"), {}),
    "brk": (("end",), {"start": None}),
    "madvise": (("start", "end", "advice"), {}),
    "touch": (("addr", "write"), {}),
    "mremap": (("start", "end", "new_start", "new_end"), {"dontunmap": False}),
}
ADDRESS_FIELDS = ("start", "end", "addr", "new_start", "new_end")
# Precomputed per op: validating is on the path of every replayed event.
_REQUIRED = {op: frozenset(req) for op, (req, _) in SCHEMA.items()}
_ALLOWED = {op: frozenset(("op", "pid", *req, *opt)) for op, (req, opt) in SCHEMA.items()}
_MMAP_FLAGS = frozenset(MMAP_FLAGS)
_ADDRESSES = {op: tuple(f for f in ADDRESS_FIELDS if f in req) for op, (req, _) in SCHEMA.items()}


class TraceError(RmaplabError):
    pass


def _address(value: Any, name: str, source: str, line: int) -> int:
    if isinstance(value, bool):
        raise TraceError(f"{name} must be an address, not {value!r}", path=source, line=line)
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        try:
            n = int(value, 0)
        except ValueError:
            raise TraceError(f"{name} {value!r} is not an address", path=source,
                             line=line) from None
    elif isinstance(value, float) and abs(value) >= 2**63:
        # orjson reads a JSON integer beyond 64 bits as a float.
        raise TraceError(f"{name} {value:.0f} is beyond 64 bits: no address", path=source,
                         line=line)
    else:
        raise TraceError(f"{name} must be an int or a '0x..' string, not {value!r}",
                         path=source, line=line)
    if n < 0:
        raise TraceError(f"{name} is negative", path=source, line=line)
    return n


def align_ranges(ev: dict[str, Any]) -> dict[str, Any]:
    """Page-align a range event's end(s) in place, as the kernel's PAGE_ALIGN(len) does
    (syscalls report unaligned lengths); start addresses must already be aligned."""
    op = ev["op"]
    if "start" in SCHEMA[op][0] and isinstance(ev.get("end"), int):
        ev["end"] = _page_align(ev["end"])
    if op == "mremap" and isinstance(ev.get("new_end"), int):
        ev["new_end"] = _page_align(ev["new_end"])
    return ev


def _page_align(n: int) -> int:
    """PAGE_ALIGN()."""
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def validate(obj: Any, source: str, line: int) -> dict[str, Any]:
    """Check one event and normalise it (addresses to ints, ranges page-aligned, defaults).

    Runs once per line of every trace read (half a million for a kernel build): the
    fields common to all ops are checked here, each op's own in its ``_CHECKS`` entry."""
    if obj.__class__ is not dict and not isinstance(obj, dict):
        raise TraceError("event is not a JSON object", path=source, line=line)
    op = obj.get("op")
    spec = _SPECS.get(op) if op.__class__ is str else None
    if spec is None:
        raise TraceError(f"unknown op {op!r}", path=source, line=line,
                         hint="ops: " + ", ".join(SCHEMA))
    required, allowed, defaults, addresses, check = spec
    pid = obj.get("pid")
    if pid.__class__ is not int:                 # bool is not int here (nor is None)
        raise TraceError(f"{op}: pid must be an integer", path=source, line=line)
    keys = obj.keys()
    if not required <= keys:
        missing = [f for f in SCHEMA[op][0] if f not in obj]
        raise TraceError(f"{op}: missing {', '.join(missing)}", path=source, line=line)
    if not keys <= allowed:
        unknown = set(obj) - allowed
        raise TraceError(f"{op}: unknown field(s) {', '.join(sorted(unknown))}", path=source,
                         line=line)
    ev = {**defaults, **obj} if defaults else obj.copy()
    for f in addresses:
        value = ev[f]
        if value.__class__ is str:               # the common case: a "0x.." string
            try:
                n = int(value, 0)
            except ValueError:
                n = -1
            # _address says what is wrong with it (a call per address costs 5% of a load).
            ev[f] = n if n >= 0 else _address(value, f, source, line)
        elif value.__class__ is not int:
            ev[f] = _address(value, f, source, line)
        elif value < 0:
            raise TraceError(f"{f} is negative", path=source, line=line)
    if check is not None:
        check(ev, op, source, line)
    return ev


def _check_range(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    start = ev["start"]
    if start & _PAGE_MASK:
        raise TraceError(f"{op}: start {start:#x} is not page-aligned", path=source, line=line)
    end = ev["end"] = _page_align(ev["end"])
    if end <= start:
        raise TraceError(f"{op}: empty or inverted range", path=source, line=line)


def _check_prot(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    if ev["prot"] not in PROTS:
        raise TraceError(f"{op}: prot {ev['prot']!r} is not one of {PROTS}", path=source,
                         line=line)


def _check_mmap(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    _check_range(ev, op, source, line)
    if ev["prot"] not in PROTS:                  # _check_prot: a call less for 57% of events
        _check_prot(ev, op, source, line)
    pgoff = ev["pgoff"]
    if pgoff.__class__ is not int or pgoff < 0:
        raise TraceError("mmap: pgoff must be a non-negative page offset", path=source,
                         line=line)
    if ev["shared"].__class__ is not bool:
        raise TraceError("mmap: shared must be true or false", path=source, line=line)
    if ev["file"] is not None and ev["file"].__class__ is not str:
        raise TraceError("mmap: file must be a string or null", path=source, line=line)
    flags = ev["flags"]
    if flags.__class__ is not list or (flags and not _known_flags(flags)):
        raise TraceError(f"mmap: flags must be a list of {', '.join(MMAP_FLAGS)}",
                         path=source, line=line)
    if ev["stack"].__class__ is not bool:
        raise TraceError("mmap: stack must be true or false", path=source, line=line)


def _known_flags(flags: list) -> bool:
    try:
        return _MMAP_FLAGS.issuperset(flags)
    except TypeError:                            # an unhashable item: [[]], [{}]
        return False


def _check_mprotect(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    _check_range(ev, op, source, line)
    _check_prot(ev, op, source, line)


def _check_madvise(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    _check_range(ev, op, source, line)
    if ev["advice"] not in ADVICE:
        raise TraceError(f"madvise: advice {ev['advice']!r} is not one of {ADVICE}",
                         path=source, line=line)


def _check_mremap(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    _check_range(ev, op, source, line)
    if ev["new_start"] & _PAGE_MASK:
        raise TraceError("mremap: new_start is not page-aligned", path=source, line=line)
    ev["new_end"] = _page_align(ev["new_end"])
    if ev["new_end"] <= ev["new_start"]:
        raise TraceError("mremap: empty or inverted new range", path=source, line=line)
    if ev["dontunmap"].__class__ is not bool:
        raise TraceError("mremap: dontunmap must be true or false", path=source, line=line)


def _check_brk(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    if ev["start"] is not None:
        ev["start"] = _address(ev["start"], "start", source, line)


def _check_comm(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    if ev["comm"] is not None and ev["comm"].__class__ is not str:
        raise TraceError(f"{op}: comm must be a string", path=source, line=line)


def _check_spawn(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    _check_comm(ev, op, source, line)
    if ev["parent"] is not None and ev["parent"].__class__ is not int:
        raise TraceError("spawn: parent must be an integer pid", path=source, line=line)


def _check_touch(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    if ev["write"].__class__ is not bool:
        raise TraceError("touch: write must be true or false", path=source, line=line)


def _check_fork(ev: dict[str, Any], op: str, source: str, line: int) -> None:
    if ev["child"].__class__ is not int:
        raise TraceError("fork: child must be an integer pid", path=source, line=line)


_PAGE_MASK = PAGE_SIZE - 1
_CHECKS: dict[str, Callable[[dict[str, Any], str, str, int], None] | None] = {
    "spawn": _check_spawn, "exec": _check_comm, "fork": _check_fork, "exit": None,
    "mmap": _check_mmap, "munmap": _check_range, "mprotect": _check_mprotect,
    "brk": _check_brk, "madvise": _check_madvise, "touch": _check_touch,
    "mremap": _check_mremap,
}
# op -> (required, allowed, defaults, address fields, op's own checks): one lookup per event.
_SPECS = {op: (_REQUIRED[op], _ALLOWED[op], opt, _ADDRESSES[op], _CHECKS[op])
          for op, (_, opt) in SCHEMA.items()}


def read(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, event) for each event of a .jsonl or .jsonl.gz trace."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise TraceError("no such trace file", path=path) from None
    except OSError as e:
        raise TraceError(f"cannot read trace ({e.strerror or e})", path=path) from None
    with f:
        yield from _parse(f, path)


def _parse(f: BinaryIO, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The events of the open trace file ``f`` (gunzipped if ``path`` ends in .gz)."""
    source = str(path)
    if path.suffix != ".gz" and _head(f) == b"\x1f\x8b":
        raise TraceError("gzip-compressed, but not named .gz (a trace is read as gzip by its "
                         "name)", path=source, line=1)
    try:
        yield from _events(gzip.GzipFile(fileobj=f, mode="rb") if path.suffix == ".gz" else f,
                           source)
    except (OSError, EOFError, zlib.error) as e:       # zlib.error: a damaged gzip stream
        raise TraceError(f"cannot read trace ({e})", path=source) from None


def _head(f: BinaryIO) -> bytes:
    """The first two bytes of f, not consumed (buffered files: peek; in-memory: seek)."""
    peek = getattr(f, "peek", None)
    if peek is not None:
        return peek(2)[:2]
    if f.seekable():
        at = f.tell()
        head = f.read(2)
        f.seek(at)
        return head
    return b""


def _events(lines: Iterable[bytes], source: str, before: int = 0,
            bare_cr: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, validated event) for each event among ``lines`` (raw lines of a
    trace, comments and blanks included), ``before`` lines into the trace.  ``bare_cr``
    False: the caller knows there is no CR in them (numbered without a generator)."""
    numbered = (_numbered_lines(lines, before) if bare_cr
                else enumerate(map(bytes.strip, lines), before + 1))
    for i, text in numbered:
        if not text or text[0] == _HASH:
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            obj = _loads_with_json(text, e, source, i)
        yield i, validate(obj, source, i)


def _numbered_lines(lines: Iterable[bytes], before: int = 0) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped line) with the line ends of text mode (universal newlines):
    a bare CR ends a line too, as it did when traces were read as text.  Numbered from
    ``before`` + 1."""
    i = before
    for raw in lines:
        text = raw.strip()
        if b"\r" not in text:
            i += 1
            yield i, text
            continue
        for part in text.split(b"\r"):
            i += 1
            yield i, part.strip()


def _loads_with_json(text: bytes, error: orjson.JSONDecodeError, source: str,
                         line: int) -> Any:
    """What json.loads makes of a line orjson refuses: JSON that escapes a lone surrogate
    ("\\ud800") is still JSON, and traces were read with json before.  Else orjson's
    reason, as a TraceError."""
    try:
        if _nested_deeper(text, _JSON_DEPTH):
            raise RecursionError
        return json.loads(text)
    except (ValueError, RecursionError):
        what = "not valid UTF-8" if "UTF-8" in error.msg else "not valid JSON"
        raise TraceError(f"{what} ({error.msg})", path=source, line=line) from None


# JSON nested deeper than this is refused before json.loads sees it: json's parser
# recurses, and where it runs out of stack depends on how deep its caller already is (a
# forked slice parser's stack is not the main process's), so one line could get two
# different errors.  An event is two deep (an object holding a list of flags).
_JSON_DEPTH = 100


def _nested_deeper(text: bytes, limit: int) -> bool:
    """True if arrays and objects (outside strings) nest deeper than limit in text."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:                       # backslash
                escaped = True
            elif c == 0x22:                       # quote
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c == 0x5B or c == 0x7B:              # [ {
            depth += 1
            if depth > limit:
                return True
        elif c == 0x5D or c == 0x7D:              # ] }
            depth -= 1
    return False


_HASH = ord("#")


def load(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Every event of a trace, in a list.

    A trace file of at least ``CACHE_MIN_BYTES`` (on disk: compressed for .gz) is parsed
    once: its events are kept, pickled, under ``cache_dir()/parsed-traces/``, named by the
    sha256 of the trace's bytes and of the code that validates them, so a changed trace or
    validator is parsed afresh; each is stored with the sha256 of its pickle, and one that
    does not match is parsed again.  RMAPLAB_TRACE_CACHE=0 turns this off; an unreadable or
    unwritable cache is passed over (the trace is parsed)."""
    path = Path(path)
    return _load_cached(path, "pickle", lambda data: list(_numbered_events(path, data)))


def _numbered_events(path: Path, data: bytes | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """The trace's (line, event) pairs, parsed from ``data`` (its bytes) if read already."""
    return read(path) if data is None else _parse(io.BytesIO(data), path)


def load_for_replay(path: str | Path) -> Decoded:
    """Every event of a trace, decoded for replay (:class:`Decoded`): what ``rmaplab
    replay`` runs.  Cached like :func:`load`, in a file of its own (``*.decoded.pickle``);
    the events are decoded as they are parsed, so a trace's dicts are never all in memory
    at once.  A large trace is parsed by all CPUs at once (:func:`_decode_in_slices`)."""
    path = Path(path)

    def build(data: bytes | None) -> Decoded:
        decoded = _decode_in_slices(path, data)
        if decoded is None:
            decoded = _decode_stream(_numbered_events(path, data), str(path))
        return decoded

    return _load_cached(path, "decoded.pickle", build, Decoded)


def _load_cached(path: Path, kind: str, build: Callable[[bytes | None], Any],
                 expect: type = list) -> Any:
    """build(the trace's bytes, or None to read it itself), from the cache if it holds
    one (see load)."""
    data = _bytes_to_cache(path)
    cached = None
    if data is not None:
        # Hashed and parsed from the same bytes: a trace replaced meanwhile cannot be
        # stored under another content's name.
        cached = (cache_dir() / "parsed-traces"
                  / f"{hashlib.sha256(data).hexdigest()}-{_validator_digest()}.{kind}")
        events = _read_cached(cached, expect)
        if events is not None:
            return events
    with _collector_paused():
        events = build(data)
    if cached is not None:
        _write_cached(cached, events)
    return events


class Decoded:
    """A trace's events decoded for replay (rmaplab.model.machine.decode) and the line of
    each, for errors.  Kept packed (machine.pack: one bytes object, 64 bytes an event),
    or as the decoded tuples if a value does not fit (a pid of 2**32, a field of 2**48).
    :func:`replay` and :func:`replay_policies` take it as they take a list of (line,
    event dict)."""

    __slots__ = ("lines", "data", "strings", "events")

    def __init__(self, lines: Iterable[int], events: list[tuple]) -> None:
        from rmaplab.model.machine import pack

        self.lines = array.array("q", lines)
        packed = pack(events)
        if packed is None:
            self.data: bytes | None = None
            self.strings: list[str] = []
            self.events: list[tuple] | None = events
        else:
            self.data, self.strings = packed
            self.events = None

    def __len__(self) -> int:
        return len(self.lines)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Decoded) and self.lines == other.lines
                and self.data == other.data and self.strings == other.strings
                and self.events == other.events)

    def op(self, i: int) -> int:
        """The op code of the i-th event."""
        from rmaplab.model.machine import RECORD

        return self.data[i * RECORD] if self.data is not None else self.events[i][0]

    def __getstate__(self) -> tuple:
        return self.lines, self.data, self.strings, self.events

    def __setstate__(self, state: tuple) -> None:
        self.lines, self.data, self.strings, self.events = state

    @classmethod
    def of(cls, lines: array.array, data: bytes | None, strings: list[str],
           events: list[tuple] | None) -> Decoded:
        """One made of its parts (packed: ``data`` and ``strings``; else ``events``)."""
        decoded = cls.__new__(cls)
        decoded.__setstate__((lines, data, strings, events))
        return decoded


def decode(events: Iterable[tuple[int, dict[str, Any]]], source: str = "<trace>") -> Decoded:
    """The :class:`Decoded` form of (line, event dict) pairs, validated ones (load, read);
    an event the model cannot decode is an error naming its line."""
    with _collector_paused():              # a million new tuples, none of them garbage
        return _decode_stream(events, source)


def _decode_stream(numbered: Iterable[tuple[int, dict[str, Any]]],
                   source: str = "<trace>") -> Decoded:
    """Decoded as parsed, and packed a batch at a time (machine.pack_more): what stays is
    64 bytes an event.  If a value does not fit, the events decoded so far are unpacked
    and the rest kept as tuples too (as Decoded(lines, events) keeps them)."""
    from rmaplab.model.machine import pack_more, unpack

    numbered = iter(numbered)
    all_lines = array.array("q")
    chunks: list[bytes] = []
    strings: list[str] = []
    index: dict[str, int] = {}
    while True:
        lines, batch = _decode_batch(numbered, source, PACK_BATCH)
        all_lines.extend(lines)
        if not batch:
            return Decoded.of(all_lines, b"".join(chunks), strings, None)
        data = pack_more(batch, strings, index)
        if data is None:                          # keep tuples, from the first event on
            events = [ev for chunk in chunks for ev in unpack(chunk, strings)]
            del chunks
            events += batch
            lines, rest = _decode_batch(numbered, source, None)
            all_lines.extend(lines)
            return Decoded.of(all_lines, None, [], events + rest)
        chunks.append(data)


# Events decoded and packed at a time: few enough that their tuples cost little memory,
# enough that a batch's overhead does not show.
PACK_BATCH = 1 << 16


def _decode_batch(numbered: Iterator[tuple[int, dict[str, Any]]], source: str,
                  count: int | None) -> tuple[list[int], list[tuple]]:
    """The lines and decoded events of the next ``count`` (None: all the rest) events."""
    from rmaplab.model.machine import EventError, decode_all

    lines: list[int] = []
    decoded: list[tuple] = []
    try:
        decode_all(numbered if count is None else itertools.islice(numbered, count),
                   lines, decoded)
    except EventError as e:
        raise TraceError(str(e), path=source, line=lines[-1]) from None
    except (KeyError, TypeError, ValueError) as e:
        # Only an event that did not go through validate() (a list built in code): say
        # which line, as validate would have.
        what = f"missing field {e}" if isinstance(e, KeyError) else f"bad value ({e})"
        raise TraceError(f"cannot decode this event: {what}", path=source,
                         line=lines[-1] if lines else None) from None
    return lines, decoded


# A trace of at least this much text is parsed by every CPU at once, each a slice of whole
# lines (a kernel build's 50 MB take 2 s on one CPU; a slice is never smaller than half).
PARALLEL_MIN_BYTES = 8 << 20


def _decode_in_slices(path: Path, data: bytes | None) -> Decoded | None:
    """The trace decoded as one parse on one CPU decodes it (the same Decoded, the same
    first error), by slices of whole lines parsed at once: this process the first, a
    forked one each other.  None where that does not apply: one CPU; no fork; a daemon
    process (it may not have children); other threads running (a forked child could
    inherit a lock one of them holds); less text than PARALLEL_MIN_BYTES; a bare CR line
    end; a gzip stream that does not decompress; a value pack() cannot hold; a slice
    parser that ran out of memory or died.  The caller then parses on one CPU, and says
    what is wrong."""
    import multiprocessing

    jobs = os.cpu_count() or 1
    if (jobs < 2 or "fork" not in multiprocessing.get_all_start_methods()
            or multiprocessing.current_process().daemon or threading.active_count() > 1):
        return None
    gz = path.suffix == ".gz"
    try:
        if data is None:
            # Not worth reading whole (a build trace's text is 12x its gzip).
            if path.stat().st_size < (PARALLEL_MIN_BYTES // 32 if gz else PARALLEL_MIN_BYTES):
                return None
            data = path.read_bytes()
        raw = gzip.decompress(data) if gz else data
    except (OSError, EOFError, zlib.error):
        return None
    # Bare CRs end lines too (_numbered_lines): slices cut at LFs would number them apart.
    if len(raw) < max(PARALLEL_MIN_BYTES, 1) or raw[:2] == b"\x1f\x8b" or b"\r" in raw:
        return None
    jobs = min(jobs, 2 * len(raw) // max(PARALLEL_MIN_BYTES, 1))
    cuts = [0]
    for k in range(1, jobs):
        cut = raw.find(b"\n", len(raw) * k // jobs) + 1
        if cut > cuts[-1]:
            cuts.append(cut)
    if cuts[-1] < len(raw):
        cuts.append(len(raw))
    slices, before = [], 0
    for lo, hi in itertools.pairwise(cuts):
        slices.append((lo, hi, before, str(path)))
        before += raw.count(b"\n", lo, hi)
    ctx = multiprocessing.get_context("fork")
    workers = []
    try:
        for spec in slices[1:]:
            receive, send = ctx.Pipe(duplex=False)
            # Forked: the child has raw as this process had it; nothing is pickled.
            proc = ctx.Process(target=_slice_worker, args=(send, raw, *spec), daemon=True)
            proc.start()
            send.close()
            workers.append((proc, receive))
        lo, hi, first, source = slices[0]
        mine = raw[lo:hi]
        raw = None               # the workers have theirs; this process needs its slice only
        outcomes = [_decode_slice(mine, 0, len(mine), first, source)]
        del mine
        for _, receive in workers:
            try:
                outcomes.append(receive.recv())
            except EOFError:                  # the worker died (killed, out of memory)
                return None
    finally:
        for proc, receive in workers:
            if proc.is_alive():
                proc.kill()
            proc.join()
            receive.close()
    parts = []
    for kind, value in outcomes:
        if kind == "error":                   # the first slice that fails: the first error
            message, where, line, hint = value
            raise TraceError(message, path=where, line=line, hint=hint)
        if kind == "no memory":
            return None
        if kind == "bug":
            raise RuntimeError(f"parsing a slice of {path} failed:\n{value}")
        parts.append(value)
    return _concat(parts)


def _decode_slice(text: bytes, lo: int, hi: int, before: int, source: str) -> tuple[str, Any]:
    """("ok", Decoded) for ``text[lo:hi]``, whole lines of a trace, ``before`` lines into
    it; or ("error", the TraceError's fields), ("no memory", None) or ("bug", a traceback)."""
    try:
        with _collector_paused():
            if lo or hi != len(text):
                text = text[lo:hi]
            return "ok", _decode_stream(_events(io.BytesIO(text), source, before,
                                                bare_cr=False), source)
    except TraceError as e:
        return "error", (e.message, e.path, e.line, e.hint)
    except MemoryError:
        return "no memory", None
    except Exception:
        import traceback

        return "bug", traceback.format_exc()


def _slice_worker(send: Any, raw: bytes, lo: int, hi: int, before: int, source: str) -> None:
    """A forked slice parser: its outcome to the parent, and nothing to stderr (the parent
    reports what went wrong, or parses on one CPU if this process died)."""
    _ignore_interrupts()
    try:
        send.send(_decode_slice(raw, lo, hi, before, source))
        send.close()
    except BaseException:                 # the parent is gone, or the outcome too large
        os._exit(1)


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C reaches the whole process group, and the parent stops (kills)
    its workers; one that took it too would print a traceback of its own."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _concat(parts: list[Decoded]) -> Decoded | None:
    """One Decoded of the slices' events, in order, as one parse of them all makes it: the
    strings table in order of first use, each record's string index renumbered to it.
    None if a slice kept its tuples (a value pack() cannot hold)."""
    import numpy as np

    from rmaplab.model.machine import RECORD

    if any(part.data is None for part in parts):
        return None
    strings = list(parts[0].strings)
    index = {s: i for i, s in enumerate(strings, 1)}
    chunks: list[Any] = [parts[0].data]
    lines = array.array("q", parts[0].lines)
    for part in parts[1:]:
        chunk: Any = part.data
        if part.strings:
            renumber = np.zeros(len(part.strings) + 1, dtype="<u8")   # 0: no string
            for i, s in enumerate(part.strings, 1):
                if s not in index:
                    strings.append(s)
                    index[s] = len(strings)
                renumber[i] = index[s]
            # Each record's last word (op | pid << 8, a..f, then the string index).
            words = np.frombuffer(part.data, dtype="<u8").reshape(-1, RECORD // 8).copy()
            words[:, -1] = renumber[words[:, -1]]
            chunk = memoryview(words).cast("B")
        chunks.append(chunk)
        lines.extend(part.lines)
    return Decoded.of(lines, b"".join(chunks), strings, None)


# Traces smaller than this are parsed every time (test fixtures, generated programs).
CACHE_MIN_BYTES = 1 << 20
CACHE_KEEP = 16                    # cache files kept (of both kinds), the most recently used
_DIGEST_BYTES = 32                 # a cached pickle starts with the sha256 of the rest


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic collections while a trace is built or unpickled: a build trace is a
    million new containers, none of them garbage, and the collections they would
    trigger take as long as the parsing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _validator_digest() -> str:
    """sha256 of the sources that decide what load() returns for a given trace (read from
    the package's .py files: with the fast path, machine and structs import from .so)."""
    global _VALIDATOR_DIGEST
    if _VALIDATOR_DIGEST is None:
        here = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for source in (here / "traces.py", here / "model" / "machine.py",
                       here / "model" / "structs.py"):
            h.update(source.read_bytes())
        h.update(orjson.__version__.encode())
        _VALIDATOR_DIGEST = h.hexdigest()[:16]
    return _VALIDATOR_DIGEST


_VALIDATOR_DIGEST: str | None = None


def _bytes_to_cache(path: Path) -> bytes | None:
    """The trace's bytes if its parsed events are to be cached, else None."""
    if os.environ.get("RMAPLAB_TRACE_CACHE", "1") == "0":
        return None
    try:
        if path.stat().st_size < CACHE_MIN_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None                        # read() says what is wrong with the file


def _read_cached(cached: Path, expect: type = list) -> Any:
    try:
        blob = cached.read_bytes()
    except OSError:
        return None
    payload = memoryview(blob)[_DIGEST_BYTES:]
    if blob[:_DIGEST_BYTES] != hashlib.sha256(payload).digest():
        return None                        # damaged or foreign: parse the trace again
    try:
        with _collector_paused():
            events = pickle.loads(payload)
    except Exception:
        return None
    if not isinstance(events, expect):
        return None
    with contextlib.suppress(OSError):
        os.utime(cached)                   # recently used: kept by the pruning
    return events


def _write_cached(cached: Path, events: Any) -> None:
    import time

    payload = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        atomic.write_bytes(cached, hashlib.sha256(payload).digest() + payload)
        kept = sorted(cached.parent.glob("*.pickle"), key=lambda p: p.stat().st_mtime,
                      reverse=True)
        for old in kept[CACHE_KEEP:]:
            old.unlink(missing_ok=True)
        # Left by a writer that was killed (atomic.write_bytes names them .NAME.*.tmp).
        for tmp in cached.parent.glob(".*.pickle.*.tmp"):
            if tmp.stat().st_mtime < time.time() - 3600:
                tmp.unlink(missing_ok=True)
    except OSError:
        pass                               # a read-only or full cache only costs time


def dumps(ev: dict[str, Any]) -> str:
    out = {k: v for k, v in ev.items() if v is not None and v != [] or k in ("op", "pid")}
    if out.get("stack") is False:
        del out["stack"]                      # the default: traces stay as they were
    for f in ADDRESS_FIELDS:
        if isinstance(out.get(f), int):
            out[f] = hex(out[f])
    return json.dumps(out, separators=(",", ":"))


def write(events: Iterable[dict[str, Any]], path: str | Path, header: str = "") -> Path:
    """Write events atomically (gzip if the name ends in .gz); ``header``: '#' lines."""
    path = Path(path)
    text = header + "".join(dumps(ev) + "\n" for ev in events)
    data = text.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    atomic.write_bytes(path, data)
    return path


def replay(events: Decoded | Iterable[tuple[int, dict[str, Any]]],
           policy: str | Policy = "v6.0", merge_rule: str | None = None,
           check: str = "incremental", source: str = "<trace>", walks: bool = False,
           thp: bool = True):
    """Run events through a model kernel; errors name the trace line (or the plug-in).

    ``events``: :class:`Decoded` (load_for_replay), a list of (line, event dict) (load;
    decoded here first: to replay one list more than once, :func:`decode` it once), or a
    stream of them (read; applied one at a time).  ``policy``: a name, a plug-in spec or a
    Policy; ``merge_rule``: None for the policy's own; ``walks``: also sample rmap-walk
    lengths (the result's ``walks``); ``thp``: the kernel has CONFIG_TRANSPARENT_HUGEPAGE
    (this machine; False for the UML kernels).
    """
    from rmaplab.model.machine import OP_NAMES, EventError, Kernel
    from rmaplab.model.plugins import guard

    if isinstance(events, list):
        events = decode(events, source)
    kernel = Kernel(policy, merge_rule=merge_rule, check=check, walks=walks, thp=thp)
    with guard(kernel.policy), frozen_heap():
        if isinstance(events, Decoded):
            try:                                 # the loops run compiled
                if events.data is not None:
                    kernel.apply_all_packed(events.data, events.strings)
                else:
                    kernel.apply_all_decoded(events.events)
            except EventError as e:
                i = kernel.event_index
                op = events.op(i)
                name = OP_NAMES[op] if op in range(len(OP_NAMES)) else f"op code {op!r}"
                raise TraceError(f"{name}: {e}", path=source, line=events.lines[i]) from None
        else:                                    # a stream (traces.read): one at a time
            for line, ev in events:
                try:
                    kernel.apply(ev)
                except EventError as e:
                    raise TraceError(f"{ev['op']}: {e}", path=source, line=line) from None
        return kernel.result()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now (the loaded trace: millions of them) out of the
    cyclic garbage collector while a replay runs: its full collections would otherwise
    walk them all again and again (40% of a replay's time).  The model's own garbage is
    collected as before; on exit the objects are handed back to the collector."""
    if gc.get_freeze_count():                # frozen already (by a caller): leave it so
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# Events a forked replay worker inherits from the process that started it (fork start
# method): a 500k-event build trace takes longer to read than to replay.
_INHERITED: Decoded | None = None


def _replay_worker(spec: str, plugin_source: str | None, merge_rule: str | None, check: str,
                   source: str, walks: bool, thp: bool = True) -> dict[str, Any]:
    from rmaplab.model import plugins

    events = _INHERITED if _INHERITED is not None else load_for_replay(source)
    policy = plugins.load(spec, plugin_source) if plugin_source is not None else spec
    return replay(events, policy=policy, merge_rule=merge_rule, check=check,
                  source=source, walks=walks, thp=thp).as_dict()


def replay_policies(events: Decoded | list[tuple[int, dict[str, Any]]], policies: list[str],
                    merge_rule: str | None = None, check: str = "incremental",
                    source: str = "<trace>", jobs: int | None = None,
                    progress: Callable[[int, int, str, float], None] | None = None,
                    walks: bool = False, thp: bool = True) -> list[dict[str, Any]]:
    """Replay one trace under several policies, one process per policy (``jobs`` at a
    time, default the CPUs); results in the order of ``policies``.  ``progress(done,
    total, policy, seconds)`` is called as each finishes.  Plug-in files are shipped as
    source, so a worker runs exactly the code the caller resolved.  ``merge_rule``,
    ``walks`` and ``thp`` as for :func:`replay`."""
    import multiprocessing
    import os
    import time
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    from rmaplab.model import plugins

    global _INHERITED
    start = time.perf_counter()
    if isinstance(events, list):
        events = decode(events, source)          # once, not in every worker
    tail = jobs is None                          # see below: only for the default
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(policies)))
    if jobs == 1:
        out = []
        for i, spec in enumerate(policies, 1):
            out.append(replay(events, policy=spec, merge_rule=merge_rule, check=check,
                              source=source, walks=walks, thp=thp).as_dict())
            if progress:
                progress(i, len(policies), out[-1]["policy"], time.perf_counter() - start)
        return out
    sources = plugins.sources(policies)
    fork = "fork" in multiprocessing.get_all_start_methods()
    _INHERITED = events if fork else None
    # One process per CPU; but once no more than jobs + 1 policies are left, they all run
    # at once (jobs + 1 processes on jobs CPUs), so that the last one does not run alone
    # while the other CPUs idle: 7 policies on 2 CPUs take 3.5 replays' time, not 4.  Only
    # with the default jobs: a --jobs given is a limit.
    tail = tail and len(policies) > jobs
    pool = ProcessPoolExecutor(jobs + 1 if tail else jobs,
                               mp_context=multiprocessing.get_context("fork" if fork else None),
                               initializer=_ignore_interrupts)
    try:
        pending = list(enumerate(policies))
        running: dict[Future, int] = {}
        results: list[dict[str, Any]] = [{}] * len(policies)
        done = 0
        while pending or running:
            at_once = jobs + 1 if tail and len(pending) + len(running) <= jobs + 1 else jobs
            while pending and len(running) < at_once:
                i, spec = pending.pop(0)
                running[pool.submit(_replay_worker, spec, sources.get(spec), merge_rule,
                                    check, source, walks, thp)] = i
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=running.__getitem__):
                i = running.pop(fut)
                results[i] = fut.result()
                done += 1
                if progress:
                    progress(done, len(policies), results[i]["policy"],
                             time.perf_counter() - start)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or a policy failed: stop the replays still running
        # now.  Leaving the pool by its `with` would wait for every queued policy (a
        # worker hit by Ctrl-C reports it and takes the next one).  The executor has no
        # public way to stop its workers before Python 3.14 (terminate_workers).
        workers = list(getattr(pool, "_processes", {}).values())
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.join(10)
        # The executor's manager thread sees the dead workers and closes its wake-up pipe;
        # if it does so while the interpreter exits, CPython 3.11's exit hook writes to the
        # closed pipe ("OSError: [Errno 9] Bad file descriptor" after our message, 2 runs
        # in 10).  Let it finish first.
        if manager is not None:
            manager.join(10)
        raise
    else:
        pool.shutdown()
    finally:
        _INHERITED = None
    return results


__all__ = ["PROT", "SCHEMA", "Decoded", "TraceError", "decode", "dumps", "load",
           "load_for_replay", "read", "replay", "replay_policies", "validate", "write"]
