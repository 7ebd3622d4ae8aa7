"""The fast path: the model's hot modules compiled with mypyc, the sources the reference.

``make venv`` runs ``python -m rmaplab.model build``: mypyc compiles :data:`MODULES` --
the same files, unchanged -- into extension modules under ``build/fast/<python tag>/``
(:data:`BUILD_DIR`, outside the package and ignored by git: one shared library,
``rmaplab_model_fast__mypyc``, plus ``rmaplab/model/<module>.<suffix>`` per file), and
writes :data:`MANIFEST` there: the sha256 of every ``rmaplab/model/*.py`` (the files the
compiled code depends on, the Makefile's ``MODEL``), and the Python and mypy versions.

Python never finds those extension modules by itself: the interpreted sources are the
default.  :func:`select` (run by ``rmaplab.model`` before it imports any model module)
puts a finder for them on ``sys.meta_path`` only if the build is current -- every source
hash, the Python version and extension suffix, and the mypy version as recorded -- and
then imports them; so an older or newer checkout never runs compiled code built from
other sources.  The interpreted sources run instead when:

* ``RMAPLAB_PURE=1`` is set (the reference);
* nothing was built (no compiler, headers or mypyc): silently (the build said why, and
  :func:`status` says so);
* the build is stale (a source, Python or mypy changed since): with a warning to rebuild
  (``make venv``);
* importing the compiled modules fails (a deleted or corrupt file, an ABI mismatch):
  with a warning, the partial imports undone;
* the process is ``python -m rmaplab.model ...`` (build, clean, status must work
  whatever state the compiled modules are in).

All or nothing: compiled classes check the types of what they are given, so one compiled
module never runs with an interpreted one.  :func:`status` reports the choice; identity
of the two is a test (tests/test_fastpath.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PACKAGE = "rmaplab.model"
# The compiled modules: everything an event runs through.  Not compiled: policies and
# plugins (plug-in policies subclass them), observe, search, and this file.
MODULES = ("base", "structs", "counters", "rmap", "vma", "memory", "fork", "machine",
           "invariants")
# mypyc's shared library for MODULES.  A top-level name: mypyc derives each compiled
# module's __file__ (and __spec__.origin) from the library's directory plus the module's
# dotted path, which is right only for a library at the root of the build tree.
GROUP = "rmaplab_model_fast"
SHARED = f"{GROUP}__mypyc"
TAG = sys.implementation.cache_tag            # e.g. cpython-311
BUILD_DIR = ROOT / "build" / "fast" / TAG
MANIFEST = BUILD_DIR / "manifest.json"
# mypyc's generated C and the compiler's objects.
C_DIR = ROOT / "build" / "mypyc"
# The old layout (before build/fast/): extension modules and manifest inside the package,
# which Python imports in preference to the .py sources at any checkout.  build and clean
# remove them; select() warns if they are there.
LEGACY_MANIFEST = HERE / "_fast_build.json"
# mypy error codes the build tolerates: Optional fields (Vmg.prev/next, vma.anon_vma,
# mm.brk) that the kernel's own logic guarantees are set where they are used.  The
# compiled code checks them at run time like every other type.  Code the type checker
# believes unreachable (a field narrowed by an assignment that a call then changes:
# the compiled code would trust the narrowing) fails the build (--warn-unreachable).
TOLERATED = ("union-attr", "arg-type", "return-value", "operator")
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]

_state: dict[str, object] = {"mode": "pure", "reason": "not selected yet"}


# ------------------------------------------------------------------ what the build depends on
def sources() -> dict[str, str]:
    """sha256 of every rmaplab/model/*.py, by file name: what a build must be current with."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(HERE.glob("*.py"))}


def mypy_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("mypy")
    except metadata.PackageNotFoundError:
        return None


def _python() -> str:
    return f"{sys.version.split()[0]} {SUFFIX}"


def _manifest() -> dict:
    try:
        return json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        return {"failed": f"unreadable {MANIFEST} ({e})"}


def stale_modules(manifest: dict, current: dict[str, str] | None = None) -> list[str]:
    """The sources (file names) added, removed or changed since the build compiled them."""
    built = manifest.get("sources", {})
    now = sources() if current is None else current
    return sorted(name for name in built.keys() | now.keys() if built.get(name) != now.get(name))


def staleness(manifest: dict) -> str | None:
    """Why a successful build's modules cannot run here, or None if they are current."""
    changed = stale_modules(manifest)
    if changed:
        return "sources changed since the build: " + ", ".join(changed)
    if manifest.get("python") != _python():
        return f"built for Python {manifest.get('python')}, this is {_python()}"
    if manifest.get("mypy") != mypy_version():
        return f"built with mypy {manifest.get('mypy')}, installed: {mypy_version()}"
    return None


def _compiled_file(fullname: str) -> Path | None:
    if fullname == SHARED:
        rel = Path(SHARED)
    else:
        pkg, _, name = fullname.rpartition(".")
        if pkg != PACKAGE or name not in MODULES:
            return None
        rel = Path(*PACKAGE.split("."), name)
    return BUILD_DIR / f"{rel}{SUFFIX}"


def _compiled_present() -> bool:
    return all(_compiled_file(n).exists() for n in (SHARED, *(f"{PACKAGE}.{m}" for m in MODULES)))


def _legacy_files() -> list[Path]:
    """Extension modules of the old in-package layout (and its manifest)."""
    found = [p for pat in ("*.so", "*.pyd") for p in HERE.glob(pat)]
    return found + ([LEGACY_MANIFEST] if LEGACY_MANIFEST.exists() else [])


# ------------------------------------------------------------------ selection
class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Serve rmaplab.model's compiled modules and their shared library from BUILD_DIR."""

    def find_spec(self, fullname, path=None, target=None):
        file = _compiled_file(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def _running_as_main() -> bool:
    """Is this process ``python -m rmaplab.model ...`` (the build/clean/status commands)?"""
    argv = list(getattr(sys, "orig_argv", ()))
    for i, arg in enumerate(argv):
        if arg == "-m":
            return i + 1 < len(argv) and argv[i + 1] == PACKAGE
        if arg == f"-m{PACKAGE}":
            return True
    return False


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _CompiledFinder)]


def _load_compiled() -> str | None:
    """Import MODULES through the finder: None if they all load, else why not (undone)."""
    before = set(sys.modules)
    sys.meta_path.insert(0, _CompiledFinder())
    try:
        for m in MODULES:
            importlib.import_module(f"{PACKAGE}.{m}")
        missing = [m for m in MODULES
                   if not _origin(sys.modules[f"{PACKAGE}.{m}"]).startswith(str(BUILD_DIR))]
        if missing:
            raise ImportError(f"not served from {BUILD_DIR}: {', '.join(missing)}")
    except Exception as e:           # corrupt, missing, built for another ABI, ...
        _remove_finder()
        package = sys.modules.get(PACKAGE)
        for name in set(sys.modules) - before:
            if name == SHARED or name.startswith(PACKAGE + "."):
                del sys.modules[name]
                if package is not None and name.rpartition(".")[0] == PACKAGE:
                    try:
                        delattr(package, name.rpartition(".")[2])
                    except AttributeError:
                        pass
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


def select() -> dict[str, object]:
    """Decide compiled or interpreted before the first model module is imported.

    Never raises: whatever is wrong with the build, the interpreted sources run.
    """
    if _state["reason"] != "not selected yet" or any(
            f"{PACKAGE}.{m}" in sys.modules for m in MODULES):
        return _state                          # decided already
    try:
        mode, reason = _decide()
    except Exception as e:                     # never block the package (or its recovery)
        _remove_finder()
        mode, reason = "pure", f"the fast path could not be selected ({e!r})"
        warnings.warn(f"rmaplab: {reason}; running the interpreted reference",
                      RuntimeWarning, stacklevel=3)
    _state.update(mode=mode, reason=reason)
    return _state


def _decide() -> tuple[str, str]:
    legacy = _legacy_files()
    if legacy:
        warnings.warn(f"rmaplab: compiled modules of the old layout in {HERE} (Python "
                      f"imports them instead of the sources): remove them with "
                      f"`python -m rmaplab.model clean` (or make clean-venv)",
                      RuntimeWarning, stacklevel=4)
    if os.environ.get("RMAPLAB_PURE", "") not in ("", "0"):
        return "pure", "RMAPLAB_PURE is set"
    if _running_as_main():
        return "pure", "python -m rmaplab.model never loads the compiled modules"
    manifest = _manifest()
    if manifest.get("failed"):
        return "pure", f"the build failed: {manifest['failed'].splitlines()[0]}"
    if not manifest:
        return "pure", "not built (make venv builds it; python -m rmaplab.model build)"
    if not _compiled_present():
        reason = (f"the build in {BUILD_DIR} is incomplete (files missing); rebuild: "
                  f"python -m rmaplab.model build")
        warnings.warn(f"rmaplab: running the interpreted reference: {reason}",
                      RuntimeWarning, stacklevel=4)
        return "pure", reason
    stale = staleness(manifest)
    if stale is not None:
        reason = f"{stale} (rebuild: make venv, or python -m rmaplab.model build)"
        warnings.warn(f"rmaplab: the compiled model is stale, running the interpreted "
                      f"reference: {reason}", RuntimeWarning, stacklevel=4)
        return "pure", reason
    failed = _load_compiled()
    if failed is not None:
        reason = (f"the compiled modules in {BUILD_DIR} failed to import ({failed}); "
                  f"rebuild: python -m rmaplab.model build")
        warnings.warn(f"rmaplab: running the interpreted reference: {reason}",
                      RuntimeWarning, stacklevel=4)
        return "pure", reason
    return "compiled", f"built {manifest.get('built', '?')} in {BUILD_DIR}"


def status() -> dict[str, object]:
    """{'mode': 'compiled'|'pure', 'reason': str, 'file': where rmaplab.model.rmap was
    loaded from (the .py source or the extension module), 'compiled': bool}."""
    import rmaplab.model.rmap as rmap

    file = _origin(rmap)
    return {**_state, "file": file, "compiled": not file.endswith(".py")}


def is_compiled() -> bool:
    import rmaplab.model.rmap as rmap

    return not _origin(rmap).endswith(".py")


def _origin(module) -> str:
    """The file a module was loaded from."""
    spec = getattr(module, "__spec__", None)
    return str(getattr(spec, "origin", None) or module.__file__)


def status_in_child(pure: bool = False) -> dict[str, object]:
    """:func:`status` of a fresh interpreter (with ``RMAPLAB_PURE=1`` if ``pure``): what
    a program started here runs.  Raises RuntimeError if that interpreter fails."""
    import subprocess

    env = dict(os.environ)
    env.pop("RMAPLAB_PURE", None)
    if pure:
        env["RMAPLAB_PURE"] = "1"
    code = "import json; from rmaplab.model import fastpath; print(json.dumps(fastpath.status()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"python -c 'import rmaplab.model' failed (exit {out.returncode}):"
                           f" {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ build and clean
def clean(this_python_only: bool = False) -> list[Path]:
    """Remove the builds (of every Python, or only this one's), mypyc's generated C and
    the old layout's files (in the package and under build/)."""
    removed = []
    targets = [BUILD_DIR, C_DIR / TAG] if this_python_only else [BUILD_DIR.parent, C_DIR]
    for path in [*targets, *_legacy_files(), *_legacy_build_outputs()]:
        if not path.exists():
            continue                           # inside a directory removed before it
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        else:
            path.unlink()
            removed.append(path)
    return removed


def _legacy_build_outputs() -> list[Path]:
    """What the in-place build left under build/: mypyc's C (target_dir build/) and
    setuptools' build_ext library directory."""
    build = ROOT / "build"
    found = [build / "ops.txt", build / "setup.py", build / PACKAGE.split(".")[0],
             C_DIR / "build"]
    found += list(build.glob("__native*"))
    for lib in build.glob("lib.*"):
        model = lib / "rmaplab" / "model"
        # the directories that hold nothing else (outermost first), else the files
        found += [d for d in (lib, model.parent, model) if d.is_dir() and not any(
            f.is_file() and f.suffix not in (".so", ".pyd") for f in d.rglob("*"))]
        found += [p for pat in ("*.so", "*.pyd") for p in model.glob(pat)]
    return [p for p in found if p.exists()]


def _compiler() -> str | None:
    """The C compiler setuptools will call (CC, else Python's), if it is on PATH."""
    import shlex
    import sysconfig

    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    try:
        words = shlex.split(cc)
    except ValueError:
        words = cc.split()
    return shutil.which(words[0]) if words else None


def build(quiet: bool = True, strict: bool = False) -> bool:
    """Compile :data:`MODULES` into :data:`BUILD_DIR`; False (and a warning on stderr) if
    it cannot.  ``strict``: a failure is not recorded (make retries it)."""
    import subprocess
    import sysconfig
    import tempfile

    clean(this_python_only=True)
    if _compiler() is None:
        return _failed("no C compiler (Debian: apt-get install gcc python3-dev)", strict)
    if importlib.util.find_spec("mypyc") is None:
        return _failed("mypyc is not installed (it comes with mypy: pip install mypy)", strict)
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        return _failed(f"no Python headers ({include}; Debian: apt-get install python3-dev)",
                       strict)
    BUILD_DIR.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{TAG}-", dir=BUILD_DIR.parent))
    c_dir = C_DIR / TAG
    script = f"""
import sys
from setuptools import setup
from mypyc.build import mypycify
sys.argv = ["setup.py", "build_ext", "--build-lib", {str(staging)!r},
            "--build-temp", {str(c_dir / 'temp')!r}]
setup(name="rmaplab-fast", ext_modules=mypycify(
    [{', '.join(repr(f'rmaplab/model/{m}.py') for m in MODULES)},
     "--follow-imports=silent", "--ignore-missing-imports", "--warn-unreachable",
     "--cache-dir", {str(c_dir / 'mypy_cache')!r},
     {', '.join(repr('--disable-error-code=' + c) for c in TOLERATED)}],
    opt_level="3", group_name={GROUP!r}, target_dir={str(c_dir)!r}))
"""
    before = sources()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run([sys.executable, f.name], cwd=ROOT, capture_output=quiet,
                             text=True)
    finally:
        os.unlink(f.name)
    built = all((staging / _compiled_file(n).relative_to(BUILD_DIR)).exists()
                for n in (SHARED, *(f"{PACKAGE}.{m}" for m in MODULES)))
    if out.returncode != 0 or not built:
        shutil.rmtree(staging, ignore_errors=True)
        log = (out.stdout or "")[-3000:] + (out.stderr or "")[-3000:] if quiet else ""
        return _failed(f"mypyc build failed (exit {out.returncode})\n{log}", strict)
    if sources() != before:
        shutil.rmtree(staging, ignore_errors=True)
        return _failed("sources changed during the build", strict)
    import datetime

    (staging / MANIFEST.name).write_text(json.dumps({
        "built": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": _python(), "mypy": mypy_version(), "sources": before}, indent=1) + "\n")
    # New files, renamed into place: a running process keeps the (unlinked) old ones.
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    os.rename(staging, BUILD_DIR)
    return True


def _failed(why: str, strict: bool = False) -> bool:
    if not strict:
        # Recorded, so that make does not try again until a model source changes.
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        MANIFEST.write_text(json.dumps({"failed": why}, indent=1) + "\n")
    print(f"rmaplab: {'ERROR' if strict else 'WARNING'}: the compiled model was not built: "
          f"{why}", file=sys.stderr)
    if not strict:
        print("rmaplab: the interpreted model (the reference) will run: same results, slower.",
              file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m rmaplab.model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("build", "clean", "status"))
    p.add_argument("--strict", action="store_true",
                   help="build: exit 1 if it cannot build, and do not record the failure "
                        "(implied by RMAPLAB_REQUIRE_FAST=1)")
    p.add_argument("--verbose", action="store_true", help="build: show the compiler's output")
    args = p.parse_args(argv)
    if args.action == "clean":
        for path in clean():
            print(f"removed {path}")
        return 0
    if args.action == "status":
        # What a program started here gets (this process never loads the compiled modules).
        try:
            print(json.dumps(status_in_child()))
        except RuntimeError as e:
            print(json.dumps({"mode": "broken", "reason": str(e)}))
            return 1
        return 0
    strict = args.strict or os.environ.get("RMAPLAB_REQUIRE_FAST", "") not in ("", "0")
    ok = build(quiet=not args.verbose, strict=strict)
    if ok:
        print(f"rmaplab: compiled model built ({len(MODULES)} modules of rmaplab.model) "
              f"in {BUILD_DIR}")
    return 0 if ok or not strict else 1
