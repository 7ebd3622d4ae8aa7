"""Plug-in policies: a :class:`~rmaplab.model.policies.Policy` subclass from outside rmaplab.

A policy is named by a spec wherever rmaplab takes one (``replay``, ``search``,
``sweep``, notebook parameters):

==========================  ================================================================
``v6.0``                    a built-in policy (rmaplab.model.policies)
``PATH.py:Class``           class ``Class`` of a Python file anywhere
``package.module:Class``    class ``Class`` of an importable module
``NAME``                    an entry point ``NAME = "package.module:Class"`` in the group
                            ``rmaplab.policies`` of an installed distribution
==========================  ================================================================

A file is executed as a module of its own (named after its path and contents, so
two files never clash); its source can be shipped to dask workers on other machines
(:func:`sources`, :func:`load` with ``source=``).  Everything that can go wrong in a
plug-in (no such file, no such class, not a Policy, an exception on import or inside a
hook) is an :class:`RmaplabError` naming the plug-in, its file and line: :func:`guard`
turns an exception raised while a plug-in policy runs into one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import sys
import traceback
import types
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from rmaplab.errors import RmaplabError
from rmaplab.model.policies import POLICIES, Policy

ENTRY_POINT_GROUP = "rmaplab.policies"

_LOADED: dict[tuple[str, str | None], Policy] = {}


def is_file_spec(spec: str) -> bool:
    """``PATH.py:Class`` (as opposed to ``package.module:Class`` or a name)."""
    target = spec.rpartition(":")[0]
    return target.endswith(".py") or "/" in target


def installed() -> dict[str, str]:
    """Entry points of the ``rmaplab.policies`` group: name -> "module:Class"."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _unknown(spec: str) -> RmaplabError:
    eps = installed()
    return RmaplabError(
        f"unknown policy {spec!r}",
        hint="built-in: " + ", ".join(POLICIES)
        + ("; installed plug-ins: " + ", ".join(sorted(eps)) if eps else "")
        + "; or a plug-in as PATH.py:Class or package.module:Class")


def load(spec: str, source: str | None = None) -> Policy:
    """The policy a plug-in spec names (instantiated once per process and source)."""
    key = (spec, hashlib.sha1(source.encode()).hexdigest() if source is not None else None)
    policy = _LOADED.get(key)
    if policy is None:
        policy = _instantiate(_find_class(spec, source), spec)
        _LOADED[key] = policy
    return policy


def _find_class(spec: str, source: str | None) -> type:
    target, sep, class_name = spec.rpartition(":")
    if not sep:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == spec:
                try:
                    return ep.load()
                except Exception as e:  # noqa: BLE001 - any import failure is the plug-in's
                    raise RmaplabError(f"plug-in policy {spec!r} ({ep.value}) cannot be "
                                       f"loaded: {type(e).__name__}: {e}") from None
        raise _unknown(spec)
    if not target or not class_name.isidentifier():
        raise RmaplabError(f"policy spec {spec!r} is not PATH.py:Class or package.module:Class")
    if is_file_spec(spec):
        if not target.endswith(".py") and Path(target).exists():
            # Not run as Python whatever it holds (a trace given by mistake: a NameError).
            raise RmaplabError(f"plug-in policy {spec!r}: not a Python file (PATH.py:Class)",
                               path=target)
        module = _module_from_file(Path(target), source)
        where = target
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise RmaplabError(f"plug-in policy {spec!r}: no module named {e.name!r}",
                               hint="install the package, or give PATH.py:Class") from None
        except Exception as e:  # noqa: BLE001 - a plug-in failing on import is a user error
            raise _import_error(spec, e) from None
        where = getattr(module, "__file__", None) or target
    cls = getattr(module, class_name, None)
    if cls is None:
        raise RmaplabError(f"plug-in policy {spec!r}: no class {class_name!r}", path=where)
    return cls


def _module_from_file(path: Path, source: str | None) -> types.ModuleType:
    if source is None:
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RmaplabError("no such plug-in policy file", path=path) from None
        except (OSError, UnicodeDecodeError) as e:
            raise RmaplabError(f"cannot read plug-in policy file ({e})", path=path) from None
    digest = hashlib.sha1(f"{path}\0{source}".encode()).hexdigest()[:12]
    name = f"rmaplab_plugin_{_identifier(path.stem)}_{digest}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as e:
        raise RmaplabError(f"plug-in policy does not compile: {e.msg}", path=path,
                           line=e.lineno) from None
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module          # classes defined in it can then be pickled
    try:
        exec(code, module.__dict__)     # noqa: S102 - running the user's plug-in is the point
    except Exception as e:  # noqa: BLE001 - a plug-in failing on import is a user error
        del sys.modules[name]
        raise _import_error(str(path), e) from None
    return module


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def _import_error(what: str, exc: Exception) -> RmaplabError:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return RmaplabError(f"plug-in policy {what!r} raised {type(exc).__name__} on import: "
                        f"{exc}", path=frame.filename, line=frame.lineno)


def _instantiate(cls: object, spec: str) -> Policy:
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise RmaplabError(f"plug-in policy {spec!r} is not a Policy subclass",
                           hint="class X(rmaplab.model.policies.Policy) or a subclass of a "
                                "built-in policy such as V60")
    try:
        policy = cls()
    except Exception as e:  # noqa: BLE001 - the plug-in's constructor failed
        raise _import_error(spec, e) from None
    name = cls.__dict__.get("name") or cls.__name__
    if name in POLICIES:
        raise RmaplabError(f"plug-in policy {spec!r} calls itself {name!r}, a built-in policy",
                           hint="give the class its own name = '...'")
    policy.name = name
    policy.spec = spec
    policy.plugin_files = frozenset(
        f for c in cls.__mro__ if not c.__module__.startswith("rmaplab.")
        and (f := getattr(sys.modules.get(c.__module__), "__file__", None)))
    return policy


def sources(specs: Iterable[str]) -> dict[str, str]:
    """The source of each file plug-in among ``specs``, to ship to dask workers."""
    out = {}
    for spec in specs:
        if isinstance(spec, str) and spec not in POLICIES and is_file_spec(spec):
            path = Path(spec.rpartition(":")[0])
            try:
                out[spec] = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise RmaplabError("no such plug-in policy file", path=path) from None
    return out


def hook_error(exc: BaseException, policy: Policy) -> RmaplabError | None:
    """One line for an exception raised while a plug-in policy ran; None for a built-in."""
    files = getattr(policy, "plugin_files", None)
    if files is None or isinstance(exc, RmaplabError):
        return None
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SystemExit) and (not frames or frames[-1].filename not in files):
        return None       # not sys.exit() in a hook (e.g. the command line's SIGTERM handler)
    inside = [f for f in frames if f.filename in files]
    if inside:
        return RmaplabError(
            f"plug-in policy {policy.name!r}: {type(policy).__name__}.{inside[0].name} raised "
            f"{type(exc).__name__}: {exc}", path=inside[-1].filename, line=inside[-1].lineno)
    last = frames[-1] if frames else None
    return RmaplabError(
        f"plug-in policy {policy.name!r}: the model failed after one of its hooks returned: "
        f"{type(exc).__name__}: {exc}",
        path=last.filename if last else None, line=last.lineno if last else None,
        hint="check what the hooks return (see README: Plug-in policies)")


@contextlib.contextmanager
def guard(policy: Policy) -> Iterator[None]:
    """Run model code under ``policy``; a plug-in's exception becomes an RmaplabError --
    also sys.exit() in a hook, which would otherwise end the command with a status that
    means something else (0: found, 1: invariant broken)."""
    try:
        yield
    except (Exception, SystemExit) as e:
        error = hook_error(e, policy)
        if error is None:
            raise
        raise error from None


__all__ = ["ENTRY_POINT_GROUP", "guard", "hook_error", "installed", "is_file_spec", "load",
           "sources"]
