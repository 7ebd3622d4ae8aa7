"""Where a measurement's directory goes, and what happens when it cannot go there.

Every live command (measure, micro, forkcost, kbuild, trace) writes its results as one
new directory ``<UTC time>-<label>`` under a parent (``data/raw/<kind>/`` by default):
checked to be writable before the measurement starts, filled in a temporary sibling and
renamed, never overwritten (a name already taken gets ``-2``, ``-3``...), and added to
the raw-data manifest when it is under data/raw.  If the directory still cannot be
written after the work (the disk filled up, the parent vanished), the results are kept
under ``$RMAPLAB_CACHE/unsaved/`` and the error says where: a measurement is never lost
because of where it was asked to go.
"""

from __future__ import annotations

import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rmaplab import atomic, integrity
from rmaplab.errors import RmaplabError
from rmaplab.paths import cache_dir, raw_dir

# Long enough for every label rmaplab makes (a config's fragments and a shell); a label cut
# short would no longer be found by its suffix (rmaplab.measure.data.latest_named).
SLUG_MAX = 100


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:SLUG_MAX] or "run"


def run_name(label: str) -> str:
    """``<UTC time>-<label>``: sorts by time; unique once :func:`save` has claimed it."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{slug(label)}"


def check_destination(parent: Path) -> None:
    """Before any work: refuse a parent directory the results could not be written to."""
    if (why := atomic.writable_error(parent)) is not None:
        raise RmaplabError(f"cannot write results under {parent}: {why}",
                           hint="choose another directory with --out")


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C back until the block is done (writing results takes milliseconds; an
    interrupt in the middle would throw the measurement away), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def keep_unfinished(parent: Path, name: str, write: Callable[[Path], None], meta: dict,
                    done: int, total: int, error: BaseException, log: Callable[[str], None]
                    ) -> None:
    """A campaign stopped half-way (Ctrl-C, a failed step): record the runs it finished as
    ``name-incomplete``, with why it stopped in ``meta["incomplete"]``; say where."""
    meta["incomplete"] = f"stopped after {done} of {total} runs: " + (str(error) or "interrupted")
    with deferred_interrupt():
        where = save(parent, name + "-incomplete", write)
        log(f"the {done} finished run(s) were kept in {where}")


def fallback_roots() -> list[Path]:
    return [cache_dir() / "unsaved", Path(tempfile.gettempdir()) / "rmaplab-unsaved"]


def _write_new(parent: Path, name: str, write: Callable[[Path], None], unique: bool) -> Path:
    target = atomic.reserve_directory(parent, name) if unique else parent / name
    with atomic.new_directory(target, reserved=unique) as d:
        write(d)
    return target


def save(parent: Path, name: str, write: Callable[[Path], None], unique: bool = True) -> Path:
    """Write a new directory ``parent/name`` with ``write(tmp_dir)``; returns it.

    ``unique``: take ``name-2``, ``name-3``... if the name is taken (else a taken name is
    a failure).  If the directory cannot be written, the results go to the first
    fallback that works and the RmaplabError names it.
    """
    try:
        target = _write_new(parent, name, write, unique)
    except OSError as e:
        reason = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        for root in fallback_roots():
            try:
                kept = _write_new(root, name, write, unique=True)
            except OSError:
                continue
            raise RmaplabError(f"cannot write the results under {parent} ({reason}); "
                               f"they were kept in {kept}",
                               hint="move them where they belong, then `rmaplab data add`"
                               ) from None
        raise RmaplabError(f"cannot write the results under {parent} ({reason}), nor under "
                           + " or ".join(map(str, fallback_roots()))) from None
    try:
        target.resolve().relative_to(raw_dir().resolve())
    except ValueError:
        return target
    try:
        integrity.add([target])
    except (RmaplabError, OSError) as e:
        raise RmaplabError(f"results written to {target} but not added to the manifest ({e})",
                           hint=f"rmaplab data add {target}") from None
    return target
