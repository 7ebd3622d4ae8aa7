"""The kernel's own VMA tests, translated to event traces with the kernel's expectation.

tools/testing/vma/vma.c runs mm/vma.c in user space on fabricated VMAs and asserts,
after each merge or split, which VMAs exist, which one survived, its range and pgoff,
and whether it carries the anon_vma; tools/testing/selftests/mm/merge.c does the same
from user space with mmap/mprotect/mremap/fork and /proc/self/maps.  A translation is
the user-visible sequence that reaches the same code in mm/vma.c, as a trace, with the
test's assertions as checkpoints on the model's state.

A translation is a trace file (rmaplab.traces) whose comment lines carry the test::

    # kernel-test: {"sources": [{"kernel": "6.12.118", "file": "tools/testing/vma/vma.c",
    #               "function": "test_merge_extend", "lines": "1463-1491",
    #               "merge_rule": "singular"}]}            (one line in the file)
    # Free text: how the test maps onto the events, what was left out and why.
    {"op": "spawn", "pid": 1}
    ...
    #= {"pid": 1, "vmas": [{"start": "0x10000000", "end": "0x10004000", "vma": "A"}]}

Each source is a kernel test the trace stands for, replayed under that kernel's VMA
merge rule.  A ``#=`` line is a checkpoint on the state after the events above it:

``pid``        the process whose VMAs are checked (required)
``vmas``       every VMA of that process, in address order
``contains``   some of its VMAs (each found by its start address)
``allocated``  counter increments since the previous checkpoint (rmaplab.model.counters
               names, e.g. ``{"avc_clone_merge": 1}`` for a dup_anon_vma() clone)
``errors``     failed syscalls since the previous checkpoint (default 0)

A VMA spec has ``start`` and ``end`` and optionally ``pgoff`` (page index), ``prot``,
``chain`` (anon_vma_chain length), ``vma`` and ``anon_vma``.  ``vma`` and ``anon_vma``
are labels: the first use binds a label to the object found there, later uses must find
the same object (the tests' ``ASSERT_EQ(vma, vma_prev)``), and two labels never name
one object; ``"anon_vma": null`` asserts an unfaulted VMA.  Invariant violations of the
model fail every translation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmaplab.model.machine import EventError, Kernel
from rmaplab.model.observe import vma_state
from rmaplab.model.vma import MERGE_RULES
from rmaplab.traces import TraceError, validate

HEADER = "# kernel-test:"
CHECKPOINT = "#="
SOURCE_FIELDS = ("kernel", "file", "function", "lines", "merge_rule")
CHECK_FIELDS = {"pid", "vmas", "contains", "allocated", "errors"}
SPEC_FIELDS = {"start", "end", "pgoff", "prot", "chain", "vma", "anon_vma"}


@dataclass(frozen=True)
class Source:
    """One kernel test a translation stands for, and the merge rule of its kernel."""

    kernel: str
    file: str
    function: str
    lines: str
    merge_rule: str


@dataclass
class Translation:
    path: Path
    sources: list[Source]
    # ("event" | "check", line number, object) in file order
    steps: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)

    @property
    def checkpoints(self) -> int:
        return sum(1 for kind, _, _ in self.steps if kind == "check")


def _json(text: str, path: Path, line: int, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"{what} is not valid JSON ({e.msg})", path=path, line=line) from None


def _address(value: Any, path: Path, line: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise TraceError(f"{value!r} is not an address or page index", path=path, line=line)


def _check_spec(spec: Any, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(spec, dict) or not {"start", "end"} <= spec.keys():
        raise TraceError("a VMA spec needs start and end", path=path, line=line)
    unknown = spec.keys() - SPEC_FIELDS
    if unknown:
        raise TraceError(f"unknown VMA spec field(s) {', '.join(sorted(unknown))}", path=path,
                         line=line)
    out = dict(spec)
    for key in ("start", "end", "pgoff"):
        if key in out:
            out[key] = _address(out[key], path, line)
    return out


def _checkpoint(obj: Any, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(obj, dict) or not isinstance(obj.get("pid"), int):
        raise TraceError("a checkpoint is an object with an integer pid", path=path, line=line)
    unknown = obj.keys() - CHECK_FIELDS
    if unknown:
        raise TraceError(f"unknown checkpoint field(s) {', '.join(sorted(unknown))}",
                         path=path, line=line)
    out = dict(obj)
    for key in ("vmas", "contains"):
        if key in out:
            if not isinstance(out[key], list):
                raise TraceError(f"{key} must be a list of VMA specs", path=path, line=line)
            out[key] = [_check_spec(s, path, line) for s in out[key]]
    if not isinstance(out.get("allocated", {}), dict):
        raise TraceError("allocated must map counter names to counts", path=path, line=line)
    return out


def load(path: str | Path) -> Translation:
    """Read a translation: its header, events and checkpoints (errors name the line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise TraceError(f"cannot read kernel-test translation ({e.strerror})",
                         path=path) from None
    if not lines or not lines[0].startswith(HEADER):
        raise TraceError(f"the first line must be '{HEADER} {{...}}'", path=path, line=1)
    header = _json(lines[0][len(HEADER):], path, 1, "the header")
    raw_sources = header.get("sources") if isinstance(header, dict) else None
    if not raw_sources or not isinstance(raw_sources, list):
        raise TraceError("the header needs a list of sources", path=path, line=1)
    sources = []
    for src in raw_sources:
        if not isinstance(src, dict) or set(src) != set(SOURCE_FIELDS):
            raise TraceError(f"each source has exactly {', '.join(SOURCE_FIELDS)}", path=path,
                             line=1)
        if src["merge_rule"] not in MERGE_RULES:
            raise TraceError(f"unknown merge rule {src['merge_rule']!r}", path=path, line=1,
                             hint="one of: " + ", ".join(MERGE_RULES))
        sources.append(Source(**src))
    translation = Translation(path, sources)
    for number, text in enumerate(lines[1:], 2):
        text = text.strip()
        if text.startswith(CHECKPOINT):
            obj = _json(text[len(CHECKPOINT):], path, number, "the checkpoint")
            translation.steps.append(("check", number, _checkpoint(obj, path, number)))
        elif text and not text.startswith("#"):
            event = validate(_json(text, path, number, "the event"), str(path), number)
            translation.steps.append(("event", number, event))
    if not translation.checkpoints:
        raise TraceError("a translation needs at least one '#=' checkpoint", path=path)
    return translation


class _Labels:
    """Labels bound to objects on first use; a label always names one object and back."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.objects: dict[str, Any] = {}

    def check(self, label: str, obj: Any) -> str | None:
        bound = self.objects.get(label)
        if bound is None:
            other = next((name for name, o in self.objects.items() if o is obj), None)
            if other is not None:
                return f"{self.kind} {label!r} is the same object as {other!r}"
            self.objects[label] = obj
            return None
        if bound is not obj:
            return f"{self.kind} {label!r} is not the object it was before"
        return None


def _compare_vma(spec: dict[str, Any], row: dict[str, Any], vmas: _Labels,
                 anon_vmas: _Labels) -> list[str]:
    out = []
    for key in ("start", "end", "pgoff", "prot", "chain"):
        if key in spec and spec[key] != row[key]:
            want, got = spec[key], row[key]
            if key in ("start", "end", "pgoff"):
                want, got = hex(want), hex(got)
            out.append(f"{key} {got}, expected {want}")
    if "vma" in spec:
        problem = vmas.check(spec["vma"], row["vma"])
        if problem:
            out.append(problem)
    if "anon_vma" in spec:
        if spec["anon_vma"] is None:
            if row["anon_vma"] is not None:
                out.append("has an anon_vma, expected none (unfaulted)")
        elif row["anon_vma"] is None:
            out.append(f"has no anon_vma, expected {spec['anon_vma']!r}")
        else:
            problem = anon_vmas.check(spec["anon_vma"], row["anon_vma"])
            if problem:
                out.append(problem)
    return out


def _describe(rows: list[dict[str, Any]]) -> str:
    return " ".join(f"[{r['start']:#x}-{r['end']:#x} {r['prot'] or '-'}"
                    f"{' av' if r['anon_vma'] is not None else ''}]" for r in rows)


def run(translation: Translation, merge_rule: str, policy: str = "v6.0") -> list[str]:
    """Replay under ``merge_rule`` and return every way the model departs from the test."""
    kernel = Kernel(policy, merge_rule=merge_rule, check="full")
    vmas, anon_vmas = _Labels("VMA"), _Labels("anon_vma")
    mismatches: list[str] = []
    last = kernel.counters.as_dict()
    for kind, line, obj in translation.steps:
        where = f"{translation.path.name}:{line}"
        if kind == "event":
            try:
                kernel.apply(obj)
            except EventError as e:
                raise TraceError(f"{obj['op']}: {e}", path=translation.path, line=line) from None
            continue
        now = kernel.counters.as_dict()
        mm = kernel.mms.get(obj["pid"])
        if mm is None:
            mismatches.append(f"{where}: no process {obj['pid']}")
            continue
        rows = vma_state(mm)
        if "vmas" in obj:
            if len(obj["vmas"]) != len(rows):
                mismatches.append(f"{where}: {len(rows)} VMAs, expected {len(obj['vmas'])}: "
                                  + _describe(rows))
            else:
                for spec, row in zip(obj["vmas"], rows, strict=True):
                    mismatches += [f"{where}: VMA {spec['start']:#x}: {p}"
                                   for p in _compare_vma(spec, row, vmas, anon_vmas)]
        for spec in obj.get("contains", ()):
            row = next((r for r in rows if r["start"] == spec["start"]), None)
            if row is None:
                mismatches.append(f"{where}: no VMA starts at {spec['start']:#x}: "
                                  + _describe(rows))
                continue
            mismatches += [f"{where}: VMA {spec['start']:#x}: {p}"
                           for p in _compare_vma(spec, row, vmas, anon_vmas)]
        for name, count in obj.get("allocated", {}).items():
            if name not in now:
                raise TraceError(f"unknown counter {name!r}", path=translation.path, line=line)
            if now[name] - last[name] != count:
                mismatches.append(f"{where}: {name} +{now[name] - last[name]}, expected +{count}")
        errors = now["syscall_errors"] - last["syscall_errors"]
        if errors != obj.get("errors", 0):
            mismatches.append(f"{where}: {errors} failed syscall(s), expected "
                              f"{obj.get('errors', 0)}")
        last = now
    mismatches += [f"{translation.path.name}: event {v.event}: {v.invariant}: {v.detail}"
                   for v in kernel.violations]
    return mismatches


def discover(root: str | Path) -> list[Translation]:
    """Every translation under root (``<kernel>/<test>.jsonl``), in path order."""
    return [load(p) for p in sorted(Path(root).glob("*/*.jsonl"))]


__all__ = ["Source", "Translation", "discover", "load", "run"]
