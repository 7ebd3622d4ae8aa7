"""The differential test: generator validity, the interpreter, the shrinker, live runs.

Live tests (marked perf) run the C interpreter under perf on this kernel; their
expected counts are either worked out by hand from the kernel source (dup_mmap,
anon_vma_fork, anon_vma_clone, __split_vma) with the interpreter's own VMAs taken
from the smaps it reports, or the model's, for the random programs and saved cases.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmaplab import ddmin, traces
from rmaplab.cli import main
from rmaplab.difftest import cases, driver, interpreter
from rmaplab.difftest import shrink as shrinking
from rmaplab.difftest.backends import HostBackend, Outcome, UmlBackend
from rmaplab.difftest.compare import HOST_KEYS, INVALID, InvalidProgram, model_counts
from rmaplab.difftest.generate import BASE, ORACLE_RULES, GeneratorError, Params, generate
from rmaplab.errors import RmaplabError
from rmaplab.kernel import build as kbuild
from rmaplab.kernel import run as krun
from rmaplab.model import POLICIES, Kernel
from rmaplab.model.policies import KERNEL_POLICIES

DATA = Path(__file__).parent / "data"
CASES = sorted((DATA / "difftest").glob("*.jsonl"))
P = 4096


def page(i: int) -> int:
    return BASE + i * P


# ------------------------------------------------------------------ the generator
@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), events=st.integers(1, 60), procs=st.integers(1, 6),
       pages=st.integers(8, 64), max_map=st.integers(1, 4), files=st.integers(0, 2))
def test_generated_programs_are_valid_under_every_policy_and_merge_rule(
        seed, events, procs, pages, max_map, files):
    """Property: a generated program replays under every policy and merge rule with no
    failed system call, no access outside a mapping and no write to a read-only page;
    no event names a dead process; at most ``procs`` processes live at once; every
    address lies in the arena; the same seed gives the same program, which the
    interpreter can run (one program line per operation)."""
    params = Params(events=events, procs=procs, pages=pages, max_map=max_map, files=files)
    program = generate(seed, params)
    assert program == generate(seed, params)
    assert program[0] == {"op": "spawn", "pid": 1} and len(program) == events + 1
    for policy in POLICIES:
        for rule in ORACLE_RULES:
            kernel = Kernel(policy, merge_rule=rule, check="off")
            for ev in program:
                kernel.apply(traces.validate(ev, "<generated>", 0))
                assert len(kernel.mms) <= procs
            assert all(getattr(kernel.counters, c) == 0 for c in INVALID), (policy, rule)
    lo, hi = BASE, BASE + pages * P
    for ev in program[1:]:
        for f in ("start", "end", "addr", "new_start", "new_end"):
            if f in ev:
                assert lo <= ev[f] <= hi, ev
    encoded = interpreter.encode(program)
    assert len(encoded.text.splitlines()) == 2 + events


def test_generator_parameters_are_checked():
    with pytest.raises(RmaplabError, match="at least 2"):
        Params(pages=4, max_map=4)
    with pytest.raises(RmaplabError, match="unknown operation"):
        Params(weights=(("brk", 1),))
    with pytest.raises(GeneratorError):
        generate(0, Params(events=5, weights=(("exit", 1),)))   # nothing but exits: impossible


def test_generator_exercises_every_operation():
    ops = {ev["op"] for s in range(30) for ev in generate(s)}
    assert ops == {"spawn", "fork", "exit", "mmap", "munmap", "mprotect", "madvise", "mremap",
                   "touch"}
    advice = {ev["advice"] for s in range(60) for ev in generate(s) if ev["op"] == "madvise"}
    assert advice == {"dontfork", "dofork", "wipeonfork", "keeponfork", "dontneed",
                      "hugepage", "nohugepage"}
    # Programs for a kernel without THP (UML) never use the two THP advices (-EINVAL there).
    uml = Params(thp=False, mremap_spans=False)
    advice = {ev["advice"] for s in range(60) for ev in generate(s, uml) if ev["op"] == "madvise"}
    assert advice == {"dontfork", "dofork", "wipeonfork", "keeponfork", "dontneed"}
    assert any(ev.get("stack") for s in range(30) for ev in generate(s))
    assert any(ev.get("stack") for s in range(30) for ev in generate(s, uml))
    assert any(ev.get("file") for s in range(30) for ev in generate(s))


# ------------------------------------------------------------------ encode / parse / prelude
def test_encode_writes_one_interpreter_line_per_operation():
    program = [
        {"op": "spawn", "pid": 7},
        {"op": "mmap", "pid": 7, "start": page(0), "end": page(2), "prot": ""},
        {"op": "mmap", "pid": 7, "start": page(2), "end": page(3), "prot": "rw", "file": "f1",
         "pgoff": 5},
        {"op": "fork", "pid": 7, "child": 9},
        {"op": "touch", "pid": 9, "addr": page(2) + 8, "write": False},
        {"op": "madvise", "pid": 9, "start": page(0), "end": page(1), "advice": "wipeonfork"},
        {"op": "mremap", "pid": 9, "start": page(0), "end": page(1), "new_start": page(8),
         "new_end": page(10)},
        {"op": "exit", "pid": 7},
    ]
    enc = interpreter.encode(program)
    assert enc.text.splitlines() == [
        "rmaplab-interp 1", f"files 1 {interpreter.FILE_PAGES}",
        "mmap 0 0x1000000000 0x1000002000 - - 0",
        "mmap 0 0x1000002000 0x1000003000 rw 0 5",
        "fork 0 1",
        "touch 1 0x1000002008 r",
        "madvise 1 0x1000000000 0x1000001000 wipeonfork",
        "mremap 1 0x1000000000 0x1000001000 0x1000008000 0x100000a000",
        "exit 0"]
    assert enc.slots == {7: 0, 9: 1} and enc.events == list(range(1, 8))


@pytest.mark.parametrize("event, message", [
    ({"op": "brk", "pid": 1, "end": page(1)}, "does not run 'brk'"),
    ({"op": "mmap", "pid": 1, "start": page(0), "end": page(1), "prot": "rw", "shared": True},
     "private memory only"),
    ({"op": "touch", "pid": 2, "addr": page(0), "write": True}, "no process 2"),
])
def test_encode_refuses_what_the_interpreter_cannot_run(event, message):
    with pytest.raises(RmaplabError, match=message):
        interpreter.encode([{"op": "spawn", "pid": 1}, event])


def test_prelude_from_a_recorded_run_describes_the_worker():
    report = interpreter.parse_output((DATA / "interp" / "host-6.18-output.txt").read_text())
    assert report.events == 2 and report.counts is None
    prelude = interpreter.prelude(report.mappings)
    maps = [ev for ev in prelude if ev["op"] == "mmap"]
    touches = [ev for ev in prelude if ev["op"] == "touch"]
    assert len(maps) == len(report.mappings) - 1          # [vsyscall] is not a VMA of the mm
    assert [ev["flags"] for ev in maps if "special" in ev["flags"]] == [["special"]] * 3
    stack = [ev for ev in maps if "growsdown" in ev["flags"]]
    assert len(stack) == 1 and stack[0]["prot"] == "rw"
    shared = [ev for ev in maps if ev["shared"]]
    assert len(shared) == 1 and shared[0]["file"].startswith("/memfd:rmaplab-interp")
    # exactly the private writable VMAs were written: bss and stack
    assert len(touches) == 2
    kernel = Kernel("v6.0", check="full")
    for ev in prelude:
        kernel.apply(traces.validate(ev, "<prelude>", 0))
    own = [v for v in kernel.mms[1].vmas if v.anon_vma is not None]
    assert len(own) == 2 and own[0].anon_vma is not own[1].anon_vma
    assert all(len(v.chain) == 1 for v in own) and kernel.violations == []


def test_prelude_refuses_a_footprint_it_does_not_understand():
    report = interpreter.parse_output((DATA / "interp" / "host-6.18-output.txt").read_text())
    ro = report.mappings[0]
    with pytest.raises(RmaplabError, match="anonymous memory"):
        interpreter.prelude([ro.__class__(**{**ro.__dict__, "anonymous_kb": 4})])
    with pytest.raises(RmaplabError, match="VmFlags dc"):
        interpreter.prelude([ro.__class__(**{**ro.__dict__, "vm_flags": ("rd", "dc")})])


def test_parse_output_refuses_truncated_output():
    text = (DATA / "interp" / "host-6.18-output.txt").read_text()
    with pytest.raises(RmaplabError, match="truncated"):
        interpreter.parse_output(text.replace("ok\n", ""))
    with pytest.raises(RmaplabError, match="not the output"):
        interpreter.parse_output("hello\n")


# ------------------------------------------------------------------ the interpreter binary
def run_interp(text: str, tmp_path: Path, env: dict | None = None):
    prog = tmp_path / "p.txt"
    prog.write_text(text)
    return subprocess.run([str(interpreter.binary()), str(prog)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60)


def test_interpreter_names_the_bad_line(tmp_path):
    out = run_interp("rmaplab-interp 1\nfiles 0 0\nmmap 0 0x1000 0x2000 rw - 0\n", tmp_path)
    assert out.returncode == 2
    assert f"{tmp_path}/p.txt:3: range not page-aligned or outside the program region" \
        in out.stderr
    out = run_interp("rmaplab-interp 1\nexit 1\n", tmp_path)
    assert out.returncode == 2 and "p.txt:2: process slot is not alive" in out.stderr


def test_interpreter_reports_a_failed_operation_with_errno(tmp_path):
    out = run_interp("rmaplab-interp 1\nfiles 0 0\n"
                     "mprotect 0 0x1000000000 0x1000001000 r\n", tmp_path)
    assert out.returncode == 3
    assert "p.txt:3: mprotect: errno 12 (ENOMEM)" in out.stderr


def test_interpreter_reports_a_process_that_died(tmp_path):
    out = run_interp("rmaplab-interp 1\nfiles 0 0\n"
                     "mmap 0 0x1000000000 0x1000001000 r - 0\nfork 0 1\n"
                     "touch 1 0x1000000000 w\n", tmp_path)
    assert out.returncode == 3 and "p.txt:5: the process died" in out.stderr


def test_interpreter_prints_counters_file_deltas(tmp_path):
    """The UML interface: "name value" lines read at both ends of the window."""
    counters = tmp_path / "counters"
    counters.write_text("anon_vma_alloc 41\navc_alloc 7\n")
    counts_out = tmp_path / "counts.json"
    out = run_interp("rmaplab-interp 1\nfiles 0 0\nmmap 0 0x1000000000 0x1000001000 rw - 0\n",
                     tmp_path, {"RMAPLAB_COUNTERS_FILE": str(counters),
                                "RMAPLAB_COUNTS_OUT": str(counts_out)})
    assert out.returncode == 0, out.stderr
    report = interpreter.parse_output(out.stdout)
    assert report.counts == {"anon_vma_alloc": 0, "avc_alloc": 0}
    assert json.loads(counts_out.read_text()) == report.counts


# ------------------------------------------------------------------ the shrinker
class ModelBackend:
    """A stand-in kernel: the model under another policy (a planted disagreement)."""

    name = "model"
    merge_rule = "uncowed"
    keys = HOST_KEYS
    mremap_spans = True

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.runs = 0

    def policies(self):
        return ("v6.0",)

    def describe(self):
        return f"the model under {self.policy}"

    def run(self, programs, policies):
        self.runs += len(programs)
        out = []
        for events in programs:
            try:
                counts = model_counts(events, [{"op": "spawn", "pid": 1}], self.policy)
            except InvalidProgram as e:
                out.append(Outcome(None, error=str(e)))
            else:
                out.append(Outcome(counts, []))
        return {policy: out for policy in policies}


def test_shrinker_reduces_a_disagreement_to_a_one_minimal_program():
    """A 'kernel' running the no-reuse policy disagrees with v6.0 (reuse in fork chains,
    the pre-v5.7 eager anon_vma for VM_WIPEONFORK); the shrunk program still disagrees,
    is valid, and no single event can be dropped."""
    backend = ModelBackend("no-reuse")
    seed, comparison = next(
        (s, c) for s in range(200)
        if (c := shrinking.run_and_compare(generate(s), backend, "v6.0")) is not None
        and "anon_vma_fork" in c.differences)
    program = generate(seed)
    small = shrinking.shrink(program, backend, "v6.0", "anon_vma_fork",
                             [{"op": "spawn", "pid": 1}])
    # The size depends on the program drawn (seed 9 of the generator since MAP_STACK mmaps
    # and the THP advices were added: 41 events to 10); 1-minimality is checked below.
    assert len(small) <= 10 < len(program)
    assert "anon_vma_fork" in shrinking.run_and_compare(small, backend, "v6.0").differences
    assert [ev["pid"] for ev in small[:1]] == [1]
    for i in range(1, len(small)):
        shorter = small[:i] + small[i + 1:]
        result = shrinking.run_and_compare(shorter, backend, "v6.0")
        assert result is None or "anon_vma_fork" not in result.differences


def test_ddmin_drops_a_forked_child_with_its_descendants():
    events = [{"op": "spawn", "pid": 1}, {"op": "fork", "pid": 1, "child": 2},
              {"op": "fork", "pid": 2, "child": 3}, {"op": "exit", "pid": 3},
              {"op": "fork", "pid": 1, "child": 4}]
    assert ddmin.descendants(events, 2) == {2, 3}
    # Keep anything with a fork of pid 1 and nothing on dead or unborn processes.
    def keep(cand):
        alive = set()
        for ev in cand:
            if ev["op"] == "spawn":
                alive.add(ev["pid"])
            elif ev["pid"] not in alive:
                return None
            elif ev["op"] == "fork":
                alive.add(ev["child"])
            elif ev["op"] == "exit":
                alive.discard(ev["pid"])
        return cand if any(e["op"] == "fork" and e["pid"] == 1 for e in cand) else None
    assert ddmin.renumber(ddmin.shrink(events, keep)) == [
        {"op": "spawn", "pid": 1}, {"op": "fork", "pid": 1, "child": 2}]


# ------------------------------------------------------------------ saved cases (model side)
@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_saved_case_is_explained_and_the_model_now_counts_what_the_kernel_did(path):
    case = cases.load(path)
    assert driver.UNEXPLAINED not in (case.shows, case.source, case.title)
    model = model_counts(case.events, case.prelude, case.policy, case.merge_rule)
    assert {k: model[k] for k in case.kernel} == case.kernel
    assert any(case.model_before[k] != case.kernel[k] for k in case.model_before)


# ------------------------------------------------------------------ the UML backend
def test_uml_backend_says_how_to_build_the_kernel(monkeypatch):
    monkeypatch.setattr(kbuild, "current_key", lambda: "0" * 16)
    monkeypatch.setattr(kbuild, "cached", lambda key: None)
    with pytest.raises(RmaplabError, match="UML kernel not built: run rmaplab kernel build"):
        UmlBackend()
    assert main(["difftest", "--backend", "uml", "-n", "1"]) == 2


def test_uml_backend_runs_the_interpreter_through_run_batch(monkeypatch, tmp_path):
    """run_batch(jobs) -> [{counts, exit_status, stdout}]; here it runs the guest's
    command on the host with a counters file standing in for /proc/rmaplab_counters."""
    counters = tmp_path / "counters"
    counters.write_text("anon_vma_alloc 5\nanon_vma_fork 3\n")
    seen = []
    stand_in = kbuild.Kernel(tmp_path / "linux", {"key": "0" * 16})

    def run_batch(jobs, kernel):
        assert kernel is stand_in
        out = []
        for policy, argv in jobs:
            seen.append(policy)
            argv = [str(counters) if a == "/proc/rmaplab_counters" else a for a in argv]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            out.append({"counts": {}, "exit_status": proc.returncode,
                        "stdout": proc.stdout + proc.stderr})
        return out

    monkeypatch.setattr(kbuild, "current_key", lambda: "0" * 16)
    monkeypatch.setattr(kbuild, "cached", lambda key: stand_in)
    monkeypatch.setattr(krun, "run_batch", run_batch)
    backend = UmlBackend()
    good = [{"op": "spawn", "pid": 1},
            {"op": "mmap", "pid": 1, "start": page(0), "end": page(1), "prot": "r"}]
    bad = [*good, {"op": "mprotect", "pid": 1, "start": page(4), "end": page(5), "prot": "r"}]
    ran = backend.run([good, bad], ["v5.4", "v6.0"])
    assert seen == ["v5.4", "v5.4", "v6.0", "v6.0"]
    ok, failed = ran["v5.4"]
    assert ok.ok and ok.counts == {"anon_vma_alloc": 0, "anon_vma_fork": 0}
    assert any(m.path == "[stack]" for m in ok.mappings)
    assert not failed.ok and failed.error == "event 2: mprotect: errno 12 (ENOMEM)"


def test_difftest_command_checks_its_arguments():
    with pytest.raises(SystemExit) as e:
        main(["difftest", "-n", "0"])
    assert e.value.code == 2


# ------------------------------------------------------------------ live: by hand
def hand_program(name: str) -> list[dict]:
    region = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": page(0), "end": page(1), "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": page(0), "write": True}]
    if name == "one-fork":
        return [*region, {"op": "fork", "pid": 1, "child": 2}]
    if name == "split-fork":
        return [{"op": "spawn", "pid": 1},
                {"op": "mmap", "pid": 1, "start": page(0), "end": page(4), "prot": "rw"},
                {"op": "touch", "pid": 1, "addr": page(0), "write": True},
                {"op": "mprotect", "pid": 1, "start": page(1), "end": page(2), "prot": "r"},
                {"op": "mprotect", "pid": 1, "start": page(3), "end": page(4), "prot": "r"},
                {"op": "fork", "pid": 1, "child": 2}]
    if name == "exit-first-chain":
        return [*region, {"op": "fork", "pid": 1, "child": 2}, {"op": "exit", "pid": 1},
                {"op": "fork", "pid": 2, "child": 3}, {"op": "exit", "pid": 2},
                {"op": "fork", "pid": 3, "child": 4}]
    if name == "dontfork-wipeonfork":
        return [*region,
                {"op": "madvise", "pid": 1, "start": page(0), "end": page(1),
                 "advice": "dontfork"},
                {"op": "mmap", "pid": 1, "start": page(2), "end": page(3), "prot": "rw"},
                {"op": "touch", "pid": 1, "addr": page(2), "write": True},
                {"op": "madvise", "pid": 1, "start": page(2), "end": page(3),
                 "advice": "wipeonfork"},
                {"op": "fork", "pid": 1, "child": 2}]
    raise KeyError(name)


def expected_by_hand(name: str, k: int, v: int) -> dict[str, int]:
    """Counts from the kernel source, for a worker with ``v`` VMAs of its own, ``k`` of
    them with an anon_vma (each a root with a one-AVC chain, from exec).

    dup_mmap() dups every VMA without VM_DONTCOPY; for each with an anon_vma,
    anon_vma_fork() clones its chain (one AVC per entry, anon_vma_clone) and, unless an
    anon_vma of the chain has num_children < 2 and num_active_vmas == 0, allocates an
    anon_vma and its AVC.  The first write fault of a VMA without one runs
    __anon_vma_prepare() (1 anon_vma, 1 AVC); __split_vma() dups the VMA and clones its
    chain.
    """
    if name == "one-fork":                  # m = k + 1 VMAs with an anon_vma fork once
        m = k + 1
        return {"anon_vma_prepare": 1, "avc_prepare": 1, "anon_vma_fork": m, "avc_fork": m,
                "avc_clone": m, "vma_alloc": 1 + v + 1, "mm_forks": 1}
    if name == "split-fork":                # 3 splits share one anon_vma; the child gets 4
        m = k + 4
        return {"anon_vma_prepare": 1, "avc_prepare": 1, "anon_vma_fork": m, "avc_fork": m,
                "avc_clone": 3 + m, "vma_alloc": 1 + 3 + v + 4, "mm_forks": 1}
    if name == "exit-first-chain":
        # Generation 2's chain is [A, B]: A has 2 children (its self-link and B), B a VMA:
        # no reuse.  Generation 3's chain is [A, B, C]: B has one child, C, and no VMA
        # since its process exited: reused (0 anon_vmas, 3 AVCs per VMA).
        m = k + 1
        return {"anon_vma_prepare": 1, "avc_prepare": 1, "anon_vma_fork": 2 * m,
                "avc_fork": 2 * m, "avc_clone": m + 2 * m + 3 * m,
                "vma_alloc": 1 + 3 * (v + 1), "mm_forks": 3}
    if name == "dontfork-wipeonfork":
        # The dontfork VMA is not copied; the wipeonfork one is, without its anon_vma.
        return {"anon_vma_prepare": 2, "avc_prepare": 2, "anon_vma_fork": k, "avc_fork": k,
                "avc_clone": k, "vma_alloc": 2 + v + 1, "mm_forks": 1}
    raise KeyError(name)


@pytest.fixture(scope="module")
def host(live_kernel):
    return HostBackend()


@pytest.mark.perf
@pytest.mark.parametrize("name", ["one-fork", "split-fork", "exit-first-chain",
                                  "dontfork-wipeonfork"])
def test_interpreter_counts_equal_a_hand_computation(host, name):
    outcome = host.run([hand_program(name)], ["v6.0"])["v6.0"][0]
    assert outcome.ok, outcome.error
    own = [m for m in outcome.mappings if m.path != "[vsyscall]"]
    k = sum(1 for m in own if m.anonymous_kb > 0)
    assert k == 2                            # bss and stack: the freestanding footprint
    expected = expected_by_hand(name, k, len(own))
    assert {key: outcome.counts[key] for key in expected} == expected
    assert outcome.counts["anon_vma_alloc"] == \
        expected["anon_vma_prepare"] + expected["anon_vma_fork"]


MODEL_PINNED = {
    # tests/test_model.py states these from the kernel source; the host must agree.
    "mremap-several-vmas": [
        {"op": "spawn", "pid": 1},
        {"op": "mmap", "pid": 1, "start": page(0), "end": page(2), "prot": "rw"},
        {"op": "touch", "pid": 1, "addr": page(1), "write": True},
        {"op": "mmap", "pid": 1, "start": page(3), "end": page(4), "prot": "r"},
        {"op": "mremap", "pid": 1, "start": page(1), "end": page(4), "new_start": page(20),
         "new_end": page(23)},
        {"op": "fork", "pid": 1, "child": 2}],
    "mremap-forked-faulted-next-to-unfaulted": [
        {"op": "spawn", "pid": 1},
        {"op": "mmap", "pid": 1, "start": page(0), "end": page(2), "prot": "rw"},
        {"op": "touch", "pid": 1, "addr": page(0), "write": True},
        {"op": "fork", "pid": 1, "child": 2},
        {"op": "mremap", "pid": 2, "start": page(0), "end": page(2), "new_start": page(32),
         "new_end": page(34)},
        {"op": "mmap", "pid": 2, "start": page(2), "end": page(4), "prot": "rw"},
        {"op": "mremap", "pid": 2, "start": page(32), "end": page(34), "new_start": page(0),
         "new_end": page(2)},
        {"op": "touch", "pid": 2, "addr": page(2), "write": True},
        {"op": "fork", "pid": 2, "child": 3}],
}


@pytest.mark.perf
@pytest.mark.parametrize("name", sorted(MODEL_PINNED))
def test_model_rules_pinned_by_hand_hold_on_this_kernel(host, name):
    comparison = shrinking.run_and_compare(MODEL_PINNED[name], host, "v6.0")
    assert comparison is not None and comparison.agree, comparison and comparison.describe()


@pytest.mark.perf
def test_this_kernel_merges_with_the_rule_of_879bca0a2c4f(host):
    """mprotect() makes a faulted one-page VMA compatible with the unfaulted VMA before it:
    6.16+ (879bca0a2c4f, the model's "uncowed" rule) merges them, 6.15 and older
    (965f55dea0e3's list_is_singular() on the unfaulted target: its chain is empty)
    did not.  The host agrees with the first and not with the second (found by
    `rmaplab difftest --merge-rule singular --seed 53`, shrunk)."""
    x, y = page(35), page(32)
    events = [{"op": "spawn", "pid": 1},
              {"op": "mmap", "pid": 1, "start": x, "end": x + P, "prot": ""},
              {"op": "mprotect", "pid": 1, "start": x, "end": x + P, "prot": "rw"},
              {"op": "touch", "pid": 1, "addr": x, "write": True},
              {"op": "mprotect", "pid": 1, "start": x, "end": x + P, "prot": "r"},
              {"op": "mmap", "pid": 1, "start": y, "end": x, "prot": "rw"},
              {"op": "mprotect", "pid": 1, "start": x, "end": x + P, "prot": "rw"},
              {"op": "fork", "pid": 1, "child": 2},
              {"op": "touch", "pid": 2, "addr": y, "write": True}]
    outcome = host.run([events], ["v6.0"])["v6.0"][0]
    assert outcome.ok, outcome.error
    prelude = interpreter.prelude(outcome.mappings)
    by_rule = {rule: model_counts(events, prelude, "v6.0", rule)
               for rule in ("uncowed", "singular")}
    assert all(by_rule["uncowed"][k] == outcome.counts[k] for k in HOST_KEYS)
    assert by_rule["singular"]["anon_vma_prepare"] == outcome.counts["anon_vma_prepare"] + 1


# ------------------------------------------------------------------ live: model vs kernel
@pytest.mark.perf
@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_saved_case_agrees_on_the_live_kernel(host, path):
    case = cases.load(path)
    if case.backend != "host":
        pytest.skip(f"a case of the {case.backend} backend")
    comparison = shrinking.run_and_compare(case.events, host, case.policy)
    assert comparison is not None and comparison.agree, comparison and comparison.describe()
    assert {k: comparison.live[k] for k in case.kernel} == case.kernel


# mergetest 4 of notes/prepare-gap/ as a difftest program, plus the two THP advices.
MAP_STACK_PROGRAM = [
    {"op": "spawn", "pid": 1},
    {"op": "mmap", "pid": 1, "start": page(0), "end": page(2), "prot": "rw"},
    {"op": "touch", "pid": 1, "addr": page(0), "write": True},
    {"op": "mmap", "pid": 1, "start": page(2), "end": page(11), "prot": "rw", "stack": True},
    {"op": "touch", "pid": 1, "addr": page(10), "write": True},
    {"op": "munmap", "pid": 1, "start": page(2), "end": page(11)},
    {"op": "mmap", "pid": 1, "start": page(20), "end": page(22), "prot": "rw"},
    {"op": "touch", "pid": 1, "addr": page(20), "write": True},
    {"op": "mmap", "pid": 1, "start": page(22), "end": page(25), "prot": "rw"},
    {"op": "madvise", "pid": 1, "start": page(22), "end": page(25), "advice": "nohugepage"},
    {"op": "madvise", "pid": 1, "start": page(22), "end": page(25), "advice": "hugepage"},
    {"op": "mmap", "pid": 1, "start": page(25), "end": page(27), "prot": "rw"},
    {"op": "touch", "pid": 1, "addr": page(25), "write": True},
]


def test_encode_marks_map_stack_and_the_thp_advices():
    text = interpreter.encode(MAP_STACK_PROGRAM).text.splitlines()
    assert text[4] == f"mmap 0 {page(2):#x} {page(11):#x} rw - 0 stack"
    assert text[2].endswith("rw - 0") and text[10].endswith(" nohugepage")
    assert text[11].endswith(" hugepage")


@pytest.mark.perf
def test_map_stack_and_thp_advices_agree_with_the_thp_model_on_this_kernel(host):
    """The static interpreter runs the MAP_STACK pattern (mergetest 4) and a split by
    madvise(MADV_NOHUGEPAGE) on this THP kernel: exact agreement with the model (THP), and
    the kernel's counts are the hand-computed ones (tests/test_model.py: 2 + 2 prepares,
    1 clone), which the model without THP does not give (it would fail this test)."""
    comparison = shrinking.run_and_compare(MAP_STACK_PROGRAM, host, "v6.0")
    assert comparison is not None and comparison.agree, comparison and comparison.describe()
    live = comparison.live
    assert (live["anon_vma_prepare"], live["avc_prepare"], live["avc_clone"]) == (4, 4, 1)
    # model_counts refuses the program without THP (the advices are -EINVAL there): replay
    # it directly and compare what it would have said.
    without = Kernel("v6.0", thp=False, check="off")
    for i, ev in enumerate(MAP_STACK_PROGRAM):
        without.apply(traces.validate(ev, "<program>", i))
    assert without.counters.anon_vma_prepare != live["anon_vma_prepare"]


# A few hundred programs on each kernel (CI runs these: 95 s and 543 s at load 20 here,
# about 20 s and 2-3 minutes on a quiet machine).
HOST_PROGRAMS = 300
UML_PROGRAMS = 200


@pytest.mark.perf
def test_random_programs_agree_with_the_model_on_this_kernel(host, tmp_path):
    params = Params(mremap_spans=host.mremap_spans)
    summary, _, _ = driver.run(HOST_PROGRAMS, 900_000, host, ["v6.0"], params, shrink=False,
                               case_dir=tmp_path, log=lambda s: None)
    result = summary.as_dict()
    assert result["errors"] == [] and result["mismatches"] == []
    assert result["agree"] == HOST_PROGRAMS


@pytest.fixture(scope="module")
def uml(uml_kernel):
    return UmlBackend()


@pytest.mark.uml
def test_random_programs_agree_with_the_model_under_every_policy_kernel(uml, tmp_path):
    """The same kind of programs on the UML 6.12 kernel under each of the five policies,
    against the model with 6.12's merge rule (singular): exact, by call site."""
    assert uml.merge_rule == "singular" and not uml.thp
    params = Params(mremap_spans=uml.mremap_spans, thp=uml.thp)
    summary, _, _ = driver.run(UML_PROGRAMS, 910_000, uml, list(KERNEL_POLICIES), params,
                               shrink=False, case_dir=tmp_path, log=lambda s: None)
    result = summary.as_dict()
    assert result["errors"] == [] and result["mismatches"] == []
    assert result["agree_by_policy"] == {p: UML_PROGRAMS for p in KERNEL_POLICIES}
    # The guest tells the AVC clones apart by caller: they were compared too.
    assert {"avc_clone_fork", "avc_clone_split"} <= set(summary.results[0].live)


@pytest.mark.uml
def test_difftest_command_runs_every_policy_on_uml(uml, tmp_path, capsys):
    out = tmp_path / "raw"
    assert main(["difftest", "--backend", "uml", "--policy", "all", "-n", "2", "--seed", "7",
                 "--json", "--record", "--out", str(out), "--case-dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["merge_rule"] == "singular" and result["policies"] == list(KERNEL_POLICIES)
    assert result["agree_by_policy"] == {p: 2 for p in KERNEL_POLICIES}
    (run_dir,) = out.iterdir()
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["kernel"]["key"] == uml.kernel.key


@pytest.mark.perf
def test_difftest_command_records_a_run(host, tmp_path, capsys):
    out = tmp_path / "raw"
    assert main(["difftest", "-n", "3", "--seed", "5", "--like", "uml", "--json", "--record",
                 "--out", str(out), "--case-dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agree"] == 3 and result["policies"] == ["v6.0"]
    (run_dir,) = out.iterdir()
    assert {p.name for p in run_dir.iterdir()} == {"metadata.json", "results.csv",
                                                   "programs.jsonl.gz"}
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["summary"]["agree"] == 3 and meta["host"]["kernel_release"]
    # --like uml: the programs the UML backend runs (mremap ranges inside one VMA).
    assert meta["summary"]["params"]["mremap_spans"] is False
