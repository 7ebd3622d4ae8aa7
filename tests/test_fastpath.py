"""The fast path (the model compiled with mypyc) gives what the reference gives.

Each side runs in its own process: the reference with ``RMAPLAB_PURE=1`` (the
interpreted sources), the fast path without it; each child asserts that it runs what it
should (``fastpath.status()``).  They must agree exactly on the full result of every
replay: every counter, the structure snapshot, the violation count and the violations,
in order (the model reports them in a deterministic order: families by root id, never by
address).  If the fast path is not built here the comparisons would be the reference
against itself: they skip, saying so, unless ``RMAPLAB_REQUIRE_FAST=1`` (then they fail).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rmaplab.model import fastpath

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("RMAPLAB_REQUIRE_FAST", "") not in ("", "0")


def run(code: str, pure: bool, timeout: float = 3000) -> object:
    """Run ``code`` in a fresh interpreter, the reference if ``pure``, else the compiled
    model (the child fails if it does not run that); ``code`` prints one JSON value."""
    mode = "pure" if pure else "compiled"
    check = ("from rmaplab.model import fastpath as _fp\n"
             "_st = _fp.status()\n"
             f"assert _st['mode'] == {mode!r} and _st['compiled'] == {not pure}, _st\n")
    env = dict(os.environ)
    env.pop("RMAPLAB_PURE", None)
    if pure:
        env["RMAPLAB_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", check + code], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fast() -> dict:
    """The fast path's status in a fresh process; skip (or fail) if it is not built."""
    status = fastpath.status_in_child()
    if not status["compiled"]:
        msg = f"the compiled model is not active here ({status['reason']})"
        if REQUIRE:
            pytest.fail(msg + "; RMAPLAB_REQUIRE_FAST=1")
        pytest.skip(msg + ": nothing to compare the reference with")
    return status


def test_pure_forces_the_interpreted_sources():
    status = fastpath.status_in_child(pure=True)
    assert status["mode"] == "pure" and not status["compiled"], status
    assert status["file"] == str(fastpath.HERE / "rmap.py")


def test_the_fast_path_is_what_runs_when_built(fast):
    assert fast["mode"] == "compiled" and fast["compiled"], fast
    # the real file, under build/fast/<tag>/, not in the package
    file = Path(fast["file"])
    assert file.is_file() and file.parent == fastpath.BUILD_DIR / "rmaplab" / "model", fast


def test_counters_declares_every_field():
    """Counters declares one int per name of FIELDS for the compiler (ast: a compiled
    class keeps no annotations)."""
    from rmaplab.model.counters import FIELDS

    tree = ast.parse((fastpath.HERE / "counters.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Counters")
    declared = {n.target.id: ast.unparse(n.annotation) for n in cls.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert set(declared) == set(FIELDS)
    assert set(declared.values()) == {"int"}


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


def _compare(code: str, timeout: float = 3000) -> dict:
    reference = run(code, pure=True, timeout=timeout)
    compiled = run(code, pure=False, timeout=timeout)
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
    from rmaplab.model import POLICIES

    results = _compare(code)
    assert len(results) == len(POLICIES) + 1              # every policy, and v5.5 checked
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
    """Tests that monkeypatch the model's classes cannot patch compiled classes: in a
    compiled session they skip, and run here on the reference, every ``interpreted_only``
    test of tests/, in a process with RMAPLAB_PURE=1.  (Interpreted, this session ran
    them already.)"""
    if not fastpath.is_compiled():
        pytest.skip("the model runs interpreted here: this session ran the "
                    "interpreted_only tests itself")
    env = dict(os.environ, RMAPLAB_PURE="1")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-m", "interpreted_only", "tests/"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " skipped" not in out.stdout, out.stdout[-2000:]


# ------------------------------------------------------------------ a copy of the tree
def _tree_copy(tmp_path: Path, with_build: bool = True) -> Path:
    """rmaplab/ (and its build) copied to tmp_path: run with cwd and PYTHONPATH there."""
    shutil.copytree(ROOT / "rmaplab", tmp_path / "rmaplab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd",
                                                  "_fast_build.json"))
    if with_build:
        shutil.copytree(fastpath.BUILD_DIR, tmp_path / fastpath.BUILD_DIR.relative_to(ROOT))
    return tmp_path


def _python_in(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("RMAPLAB_PURE", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=env, cwd=tree, timeout=600)


STATUS_AND_RUN = """
import json, sys
from rmaplab.model import Kernel, fastpath
kernel = Kernel("v5.5")
for ev in ({"op": "spawn", "pid": 1}, {"op": "mmap", "pid": 1, "start": 4096, "end": 8192,
           "prot": "rw"}, {"op": "touch", "pid": 1, "addr": 4096, "write": True},
           {"op": "fork", "pid": 1, "child": 2}):
    kernel.apply(ev)
finders = [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "_CompiledFinder"]
print(json.dumps({**fastpath.status(), "finders": finders,
                  "alloc": kernel.counters.anon_vma_alloc}))
"""


def test_without_a_build_the_sources_run_and_no_finder_is_installed(tmp_path):
    tree = _tree_copy(tmp_path, with_build=False)
    out = _python_in(tree, "-c", STATUS_AND_RUN)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout.splitlines()[-1])
    assert status["mode"] == "pure" and "not built" in status["reason"], status
    assert status["file"] == str(tree / "rmaplab" / "model" / "rmap.py")
    assert status["finders"] == [] and status["alloc"] == 2
    assert "Warning" not in out.stderr, out.stderr


def test_a_broken_build_falls_back_to_the_sources(fast, tmp_path):
    """A corrupt compiled module: one warning, the sources run, nothing compiled is left
    half-imported; python -m rmaplab.model status/clean/build still work."""
    tree = _tree_copy(tmp_path)
    build = tree / fastpath.BUILD_DIR.relative_to(ROOT)
    good = _python_in(tree, "-c", STATUS_AND_RUN)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout.splitlines()[-1])["mode"] == "compiled"
    (build / "rmaplab" / "model" / f"vma{fastpath.SUFFIX}").write_bytes(b"not an ELF file")
    out = _python_in(tree, "-c", STATUS_AND_RUN)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout.splitlines()[-1])
    assert status["mode"] == "pure" and "failed to import" in status["reason"], status
    assert status["file"].endswith("rmap.py") and status["finders"] == []
    assert status["alloc"] == 2
    assert out.stderr.count("RuntimeWarning") == 1, out.stderr
    out = _python_in(tree, "-m", "rmaplab.model", "status")
    assert out.returncode == 0 and '"mode": "pure"' in out.stdout, out.stdout + out.stderr
    out = _python_in(tree, "-m", "rmaplab.model", "clean")
    assert out.returncode == 0 and not build.exists(), out.stdout + out.stderr


def test_clean_removes_the_old_in_package_layout(tmp_path):
    """Extension modules left inside the package by the old in-place build shadow the
    sources at every checkout: a warning, and clean removes them even when they are
    broken (python -m rmaplab.model imports no model module)."""
    tree = _tree_copy(tmp_path, with_build=False)
    model = tree / "rmaplab" / "model"
    legacy = [model / f"{m}{fastpath.SUFFIX}" for m in fastpath.MODULES]
    legacy.append(model / "_fast_build.json")
    for path in legacy:
        path.write_bytes(b"stale")
    out = _python_in(tree, "-m", "rmaplab.model", "clean")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "old layout" in out.stderr
    assert not any(p.exists() for p in legacy), out.stdout
