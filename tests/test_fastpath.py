"""The fast path (the model compiled with mypyc) gives what the reference gives.

Each side runs in its own process: the reference with ``RMAPLAB_PURE=1`` (the
interpreted sources), the fast path without it.  They must agree exactly on the full
result of every replay: every counter, the structure snapshot, the violation count and
the violations (compared as sorted lists: the order in which one event's findings are
reported follows set iteration, which is by address in both).  If the fast path is not
built here the comparisons would be the reference against itself: they skip, saying
so, unless ``RMAPLAB_REQUIRE_FAST=1`` (then they fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmaplab.model import fastpath

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("RMAPLAB_REQUIRE_FAST", "") not in ("", "0")


def run(code: str, pure: bool, timeout: float = 3000) -> object:
    """Run ``code`` in a fresh interpreter (pure or not); it prints one JSON value."""
    env = dict(os.environ)
    env.pop("RMAPLAB_PURE", None)
    if pure:
        env["RMAPLAB_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


STATUS = ("import json; from rmaplab.model import fastpath; "
          "print(json.dumps({**fastpath.status(), 'compiled': fastpath.is_compiled()}))")


@pytest.fixture(scope="module")
def fast() -> dict:
    """The fast path's status in a fresh process; skip (or fail) if it is not built."""
    status = run(STATUS, pure=False)
    if not status["compiled"]:
        msg = f"the compiled model is not active here ({status['reason']})"
        if REQUIRE:
            pytest.fail(msg + "; RMAPLAB_REQUIRE_FAST=1")
        pytest.skip(msg + ": nothing to compare the reference with")
    return status


def test_pure_forces_the_interpreted_sources():
    status = run(STATUS, pure=True)
    assert status["mode"] == "pure" and not status["compiled"], status
    assert status["file"].endswith("rmap.py")


def test_the_fast_path_is_what_runs_when_built(fast):
    assert fast["mode"] == "compiled" and not fast["file"].endswith(".py"), fast


def test_a_changed_source_is_stale():
    """Every rmaplab/model/*.py is hashed (the Makefile's MODEL), not only MODULES."""
    current = fastpath.sources()
    assert set(current) == {p.name for p in fastpath.HERE.glob("*.py")}
    assert {"policies.py", "observe.py", "plugins.py"} <= set(current)
    manifest = {"sources": dict(current), "python": fastpath._python(),
                "mypy": fastpath.mypy_version()}
    assert fastpath.stale_modules(manifest) == [] and fastpath.staleness(manifest) is None
    manifest["sources"]["policies.py"] = "0" * 64
    assert fastpath.stale_modules(manifest) == ["policies.py"]
    manifest["sources"] = {**current, "gone.py": "0" * 64}
    assert fastpath.stale_modules(manifest) == ["gone.py"]
    assert fastpath.stale_modules({}) == sorted(current)
    manifest["sources"] = dict(current)
    assert "Python" in fastpath.staleness({**manifest, "python": "3.0.0 .so"})
    assert "mypy" in fastpath.staleness({**manifest, "mypy": "0.1"})


def _normalised(results: dict) -> dict:
    for r in results.values():
        r["violations"] = sorted(json.dumps(v, sort_keys=True) for v in r["violations"])
    return results


def _compare(code: str, timeout: float = 3000) -> dict:
    reference = _normalised(run(code, pure=True, timeout=timeout))
    compiled = _normalised(run(code, pure=False, timeout=timeout))
    assert reference.keys() == compiled.keys()
    differ = [k for k in reference if reference[k] != compiled[k]]
    for k in differ[:3]:
        a, b = reference[k], compiled[k]
        print(k, {f: (a.get(f), b.get(f)) for f in a.keys() | b.keys() if a.get(f) != b.get(f)})
    assert not differ, f"{len(differ)} of {len(reference)} results differ: {differ[:10]}"
    return reference


def recorded_build() -> Path:
    from rmaplab.measure.data import measurement_dirs

    dirs = [d for d in measurement_dirs("traces") if (d / "trace.jsonl.gz").exists()]
    if not dirs:
        pytest.skip("no recorded build trace under data/raw/traces/")
    return dirs[-1] / "trace.jsonl.gz"


@pytest.mark.slow
def test_recorded_build_identical_under_every_policy(fast):
    """The recorded kernel build (the one `make bench` replays): every policy (counters and
    structure), and v5.5 with the invariants checked after every event (what `rmaplab
    replay` does by default; the reference takes minutes for each policy so checked)."""
    trace = recorded_build()
    code = f"""
import json
from rmaplab import traces
from rmaplab.model import POLICIES
events = traces.load({str(trace)!r})
out = {{r["policy"]: r for r in traces.replay_policies(events, list(POLICIES), check="off",
                                                      jobs=2)}}
out["v5.5 incremental"] = traces.replay(events, policy="v5.5", check="incremental").as_dict()
print(json.dumps(out))
"""
    results = _compare(code)
    assert len(results) == 8
    assert all(r["events"] > 100_000 and r["anon_vma_alloc"] > 0 for r in results.values())


RANDOM_PROGRAMS = """
import json, random
from rmaplab.difftest import generate
from rmaplab.model import POLICIES, Kernel
from rmaplab.model import search
out = {}
for seed in range(60):
    events = generate.generate(seed, generate.Params(events=60))
    for policy in POLICIES:
        for check in ("incremental", "full"):
            kernel = Kernel(policy, check=check)
            for ev in events:
                kernel.apply(dict(ev))
            out[f"difftest {seed} {policy} {check}"] = kernel.result().as_dict()
from pathlib import Path
from rmaplab import traces
for path in sorted(Path("data/traces").glob("*.jsonl")):     # the searches' findings
    events = [ev for _, ev in traces.load(path)]
    for policy in POLICIES:
        for check in ("incremental", "full"):
            kernel = Kernel(policy, check=check)
            for ev in events:
                kernel.apply(ev)
            out[f"finding {path.name} {policy} {check}"] = kernel.result().as_dict()
rng = random.Random(7)
for i in range(300):
    program = search.random_program(rng, 40)
    for policy in POLICIES:
        kernel, _ = search.run_program(program, policy, check="incremental")
        out[f"search {i} {policy}"] = kernel.result().as_dict()
print(json.dumps(out))
"""


def test_random_programs_identical(fast):
    """Random programs of the difftest generator (every op: mmap, munmap, mprotect,
    madvise, mremap, brk, fork, exit, faults) and of the invariant search, and the
    violations the searches found (data/traces/), under every policy."""
    results = _compare(RANDOM_PROGRAMS)
    assert sum(r["violation_count"] > 0 for r in results.values()) >= 7   # not all clean
    assert len({r["anon_vma_alloc"] for r in results.values()}) > 5


def test_searches_find_the_same_violations(fast):
    """A steered and an unsteered search find, and shrink to, the same trace."""
    code = """
import json
from rmaplab.model import search
out = {}
for policy in ("v5.4", "v5.5"):
    f = search.find_violation(policy, budget=3000)
    out[f"steered {policy}"] = None if f is None else {"events": f.events,
        "violation": f.violation, "examples": f.examples}
for policy in ("v5.4", "wei-intended"):
    f = search.random_search(policy, budget=3000, seed=1)
    out[f"unsteered {policy}"] = None if f is None else {"events": f.events,
        "violation": f.violation, "examples": f.examples}
print(json.dumps(out))
"""
    reference = run(code, pure=True)
    assert run(code, pure=False) == reference
    assert any(v is not None for v in reference.values())


def test_tests_that_plant_bugs_run_on_the_reference():
    """Tests that monkeypatch the model's classes cannot patch compiled classes; they run
    here on the reference, in a process with RMAPLAB_PURE=1."""
    env = dict(os.environ, RMAPLAB_PURE="1")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-m", "interpreted_only", "tests/test_model_properties.py",
         "tests/test_kernel_tests.py"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " skipped" not in out.stdout, out.stdout[-2000:]
