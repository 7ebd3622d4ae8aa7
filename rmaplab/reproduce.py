"""``rmaplab reproduce``: run every notebook in order, then build the paper.

Notebooks are executed with papermill in place: the executed copy (with outputs,
which nbval compares in CI) replaces notebooks/NN_*.ipynb only when every cell ran.
On failure the executed copy is kept under build/failed/ and the error names the
notebook and the cell.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.paths import notebooks_dir, repo_root


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise RmaplabError("no notebooks found", path=notebooks_dir())
    if only:
        chosen = [p for p in found if any(p.name.startswith(o) or p.stem == o for o in only)]
        missing = [o for o in only if not any(p.name.startswith(o) or p.stem == o for p in found)]
        if missing:
            raise RmaplabError(f"no notebook matches {', '.join(missing)}",
                               hint="available: " + ", ".join(p.stem for p in found))
        return chosen
    return found


def declared_parameters(path: Path) -> dict[str, Any]:
    import papermill

    return {name: info for name, info in papermill.inspect_notebook(str(path)).items()}


def split_parameters(paths: list[Path], params: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Give each notebook the parameters it declares; refuse names no notebook declares."""
    declared = {p: declared_parameters(p) for p in paths}
    unknown = [k for k in params if not any(k in d for d in declared.values())]
    if unknown:
        known = sorted({k for d in declared.values() for k in d})
        raise RmaplabError(f"unknown notebook parameter(s): {', '.join(unknown)}",
                           hint="declared: " + (", ".join(known) or "none"))
    return {p: {k: v for k, v in params.items() if k in declared[p]} for p in paths}


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop run-specific metadata (timestamps, durations) so re-runs diff cleanly."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    return nb


def run_notebook(path: Path, parameters: dict[str, Any]) -> float:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    failed_dir = repo_root() / "build" / "failed"
    tmp = path.with_name(f".{path.stem}.running.ipynb")
    start = time.perf_counter()
    env_backup = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        papermill.execute_notebook(
            str(path), str(tmp), parameters=parameters, kernel_name="python3",
            language="python", progress_bar=False, cwd=str(path.parent), log_output=False,
        )
    except PapermillExecutionError as e:
        failed_dir.mkdir(parents=True, exist_ok=True)
        kept = failed_dir / path.name
        os.replace(tmp, kept)
        raise RmaplabError(
            f"cell {e.exec_count if e.exec_count is not None else e.cell_index} raised "
            f"{e.ename}: {e.evalue.splitlines()[0] if e.evalue else ''}",
            path=path, hint=f"executed copy kept at {kept.relative_to(repo_root())}",
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)     # interrupted, or the kernel died: no half-run copy
        raise
    finally:
        if env_backup is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = env_backup
    elapsed = time.perf_counter() - start
    nb = clean(nbformat.read(tmp, as_version=4))
    atomic.write_text(path, nbformat.writes(nb) + "\n")
    tmp.unlink()
    return elapsed


def reproduce(params: dict[str, Any] | None = None, only: list[str] | None = None,
              paper: bool = True, log: Callable[[str], None] | None = None) -> dict[str, float]:
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    paths = notebooks(only)
    per_nb = split_parameters(paths, params or {})
    times: dict[str, float] = {}
    total = time.perf_counter()
    for i, path in enumerate(paths, 1):
        shown = ", ".join(f"{k}={v!r}" for k, v in per_nb[path].items())
        log(f"[{i}/{len(paths)}] {path.name}" + (f" ({shown})" if shown else "") + " ...")
        times[path.name] = run_notebook(path, per_nb[path])
        log(f"[{i}/{len(paths)}] {path.name} done in {times[path.name]:.1f} s")
    if paper:
        from rmaplab import paper as paper_mod

        start = time.perf_counter()
        pdf = paper_mod.build()
        times["paper"] = time.perf_counter() - start
        log(f"paper: {pdf.relative_to(repo_root())} built in {times['paper']:.1f} s")
    log(f"reproduce: {len(paths)} notebook(s) in {time.perf_counter() - total:.1f} s")
    return times
