"""The fast path: the model's hot modules compiled with mypyc, the sources the reference.

``make venv`` runs ``python -m rmaplab.model build``: mypyc compiles
:data:`MODULES` -- the same files, unchanged -- into extension modules that sit beside
them in ``rmaplab/model/`` (one shared library, ``_fast__mypyc``, plus one small
module per file), and writes :data:`MANIFEST` with the sha256 of every source it
compiled.  Python imports an extension module in preference to the ``.py`` of the
same name, so the compiled model is what runs, unless:

* ``RMAPLAB_PURE=1`` is set: the interpreted sources are imported (the reference);
* a source changed since the build (its sha256 differs from the manifest): the
  interpreted sources are imported, with a warning to rebuild (``make venv``);
* nothing was built (no compiler, headers or mypyc): the interpreted sources, silently
  (the build said why, and :func:`status` says so).

All or nothing: compiled classes check the types of what they are given, so one
compiled module never runs with an interpreted one.  ``rmaplab.model`` applies this
choice before it imports any of them (:func:`select`); :func:`status` reports it.
Identity of the two is a test (tests/test_fastpath.py).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "rmaplab.model"
# The compiled modules: everything an event runs through.  Not compiled: policies and
# plugins (plug-in policies subclass them), observe, search, and this file.
MODULES = ("base", "structs", "counters", "rmap", "vma", "memory", "fork", "machine",
           "invariants")
MANIFEST = HERE / "_fast_build.json"
GROUP = f"{PACKAGE}._fast"
# mypy error codes the build tolerates: Optional fields (Vmg.prev/next, vma.anon_vma,
# mm.brk) that the kernel's own logic guarantees are set where they are used.  The
# compiled code checks them at run time like every other type.  Code the type checker
# believes unreachable (a field narrowed by an assignment that a call then changes:
# the compiled code would trust the narrowing) fails the build (--warn-unreachable).
TOLERATED = ("union-attr", "arg-type", "return-value", "operator")

_state: dict[str, object] = {"mode": "pure", "reason": "not selected yet"}


def _digest(name: str) -> str:
    return hashlib.sha256((HERE / f"{name}.py").read_bytes()).hexdigest()


def _compiled_present() -> bool:
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return all(any((HERE / f"{m}{s}").exists() for s in suffixes) for m in MODULES)


def _manifest() -> dict:
    try:
        return json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        return {"failed": f"unreadable {MANIFEST.name} ({e})"}


def stale_modules(manifest: dict) -> list[str]:
    """The compiled modules whose source differs from what the build compiled."""
    built = manifest.get("sources", {})
    return [m for m in MODULES if built.get(m) != _digest(m)]


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Import the model's compiled-module names from their .py sources."""

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, name = fullname.rpartition(".")
        if pkg != PACKAGE or name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, HERE / f"{name}.py")


def select() -> dict[str, object]:
    """Decide compiled or interpreted before the first model module is imported."""
    loaded = [m for m in MODULES if f"{PACKAGE}.{m}" in sys.modules]
    if loaded:                      # decided already (re-import of the package)
        return _state
    manifest = _manifest()
    if os.environ.get("RMAPLAB_PURE", "") not in ("", "0"):
        reason = "RMAPLAB_PURE is set"
    elif manifest.get("failed"):
        reason = f"the build failed: {manifest['failed'].splitlines()[0]}"
    elif not manifest or not _compiled_present():
        reason = "not built (make venv builds it; python -m rmaplab.model build)"
    else:
        stale = stale_modules(manifest)
        if not stale:
            _state.update(mode="compiled", reason=f"built {manifest.get('built', '?')}")
            return _state
        reason = ("sources changed since the build: " + ", ".join(stale)
                  + " (rebuild: make venv, or python -m rmaplab.model build)")
        warnings.warn(f"rmaplab: the compiled model is stale, running the interpreted "
                      f"reference: {reason}", RuntimeWarning, stacklevel=3)
    sys.meta_path.insert(0, _SourceFinder())
    _state.update(mode="pure", reason=reason)
    return _state


def status() -> dict[str, object]:
    """{'mode': 'compiled'|'pure', 'reason': str, 'files': where rmaplab.model.rmap came from}."""
    import rmaplab.model.rmap as rmap

    return {**_state, "file": rmap.__file__}


def is_compiled() -> bool:
    import rmaplab.model.rmap as rmap

    return not rmap.__file__.endswith(".py")


def clean() -> list[Path]:
    removed = []
    for path in [*HERE.glob("*.so"), *HERE.glob("*.pyd"), MANIFEST]:
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def build(quiet: bool = True) -> bool:
    """Compile :data:`MODULES` in place; False (and a warning on stderr) if it cannot."""
    import shutil
    import subprocess
    import tempfile

    root = HERE.parent.parent
    clean()
    script = f"""
import sys
from setuptools import setup
from mypyc.build import mypycify
sys.argv = ["setup.py", "build_ext", "--inplace", "--build-temp", {str(root / 'build' / 'mypyc')!r}]
setup(name="rmaplab-fast", ext_modules=mypycify(
    [{', '.join(repr(f'rmaplab/model/{m}.py') for m in MODULES)},
     "--follow-imports=silent", "--ignore-missing-imports", "--warn-unreachable",
     {', '.join(repr('--disable-error-code=' + c) for c in TOLERATED)}],
    opt_level="3", group_name={GROUP!r}))
"""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return _failed("no C compiler (Debian: apt-get install gcc python3-dev)")
    if importlib.util.find_spec("mypyc") is None:
        return _failed("mypyc is not installed (it comes with mypy: pip install mypy)")
    include = Path(__import__("sysconfig").get_paths()["include"]) / "Python.h"
    if not include.exists():
        return _failed(f"no Python headers ({include}; Debian: apt-get install python3-dev)")
    sources = {m: _digest(m) for m in MODULES}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run([sys.executable, f.name], cwd=root, capture_output=quiet,
                             text=True)
    finally:
        os.unlink(f.name)
    if out.returncode != 0 or not _compiled_present():
        clean()
        log = (out.stdout or "")[-3000:] + (out.stderr or "")[-3000:] if quiet else ""
        return _failed(f"mypyc build failed (exit {out.returncode})\n{log}")
    if {m: _digest(m) for m in MODULES} != sources:
        clean()
        return _failed("sources changed during the build")
    import datetime

    MANIFEST.write_text(json.dumps({
        "built": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": sys.version.split()[0], "modules": list(MODULES), "sources": sources},
        indent=1) + "\n")
    return True


def _failed(why: str) -> bool:
    # Recorded, so that make does not try again until a model source changes.
    MANIFEST.write_text(json.dumps({"failed": why}, indent=1) + "\n")
    print(f"rmaplab: WARNING: the compiled model was not built: {why}\n"
          "rmaplab: the interpreted model (the reference) will run: same results, slower.",
          file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m rmaplab.model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("build", "clean", "status"))
    p.add_argument("--strict", action="store_true", help="build: exit 1 if it cannot build")
    p.add_argument("--verbose", action="store_true", help="build: show the compiler's output")
    args = p.parse_args(argv)
    if args.action == "clean":
        for path in clean():
            print(f"removed {path}")
        return 0
    if args.action == "status":
        print(json.dumps(status()))
        return 0
    ok = build(quiet=not args.verbose)
    if ok:
        print(f"rmaplab: compiled model built ({len(MODULES)} modules of rmaplab.model)")
    return 0 if ok or not args.strict else 1
