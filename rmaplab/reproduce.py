"""``rmaplab reproduce``: run every notebook in order, then build the paper.

Notebooks are executed with papermill in place: the executed copy (with outputs,
which nbval compares in CI) replaces notebooks/NN_*.ipynb only when every cell ran.
On failure the executed copy is kept under build/failed/ and the error names the
notebook and the cell.  With an output directory everything goes there instead --
executed notebooks (DIR/notebooks/), failed copies (DIR/build/failed/), figures,
numbers.json and the paper (through RMAPLAB_OUTPUT_DIR) -- so an experiment with other
parameters never overwrites the committed study.
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import sys
import time
import tokenize
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.paths import notebooks_dir, output_root, paper_dir, repo_root


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


@dataclass(frozen=True)
class Parameter:
    name: str
    default: str          # the default as written in the cell
    help: str             # its comment: trailing the assignment's first line, or just above it


def parameters_cell(path: Path) -> list[Parameter]:
    """The assignments of a notebook's cell tagged ``parameters``, with their comments."""
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return []
    source = cell.source
    comments: dict[int, tuple[int, str]] = {}          # line -> (column, text)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
    out = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
            continue
        default = ast.unparse(node.value)
        trailing = comments.get(node.lineno)
        above = comments.get(node.lineno - 1)
        help_text = (trailing[1] if trailing and trailing[0] > 0
                     else above[1] if above and above[0] == 0 else "")
        out.append(Parameter(targets[0].id, default, help_text))
    return out


def parameters_help(width: int = 90) -> str:
    """Every notebook's parameters, for ``rmaplab reproduce --help``."""
    import textwrap

    lines = ["notebooks and their parameters (-p NAME VALUE, VALUE read as YAML):"]
    for path in notebooks():
        lines.append(f"  {path.stem}")
        for p in parameters_cell(path):
            default = p.default if len(p.default) <= 50 else p.default[:47] + "..."
            lines.append(f"    {p.name} = {default}")
            if p.help:
                lines += textwrap.wrap(p.help, width, initial_indent=" " * 8,
                                       subsequent_indent=" " * 8)
    return "\n".join(lines)


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


@contextmanager
def _output_root(directory: Path | None) -> Iterator[None]:
    """RMAPLAB_OUTPUT_DIR set for the notebooks' kernels (they inherit the environment)."""
    saved = os.environ.get("RMAPLAB_OUTPUT_DIR")
    if directory is not None:
        os.environ["RMAPLAB_OUTPUT_DIR"] = str(directory)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("RMAPLAB_OUTPUT_DIR", None)
        else:
            os.environ["RMAPLAB_OUTPUT_DIR"] = saved


def run_notebook(path: Path, parameters: dict[str, Any], target: Path | None = None,
                 failed_dir: Path | None = None) -> float:
    """Execute ``path`` (in its own directory) and write the executed copy to ``target``
    (default: in place) only if every cell ran; else keep it in ``failed_dir``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = target or path
    failed_dir = failed_dir or repo_root() / "build" / "failed"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{path.stem}.running.ipynb")
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
            path=path, hint=f"executed copy kept at {_shown(kept)}",
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
    atomic.write_text(target, nbformat.writes(nb) + "\n")
    tmp.unlink()
    return elapsed


def _shown(path: Path) -> Path:
    try:
        return path.relative_to(repo_root())
    except ValueError:
        return path


def reproduce(params: dict[str, Any] | None = None, only: list[str] | None = None,
              paper: bool = True, log: Callable[[str], None] | None = None,
              output_dir: Path | None = None) -> dict[str, float]:
    """Run the notebooks (then build the paper).  ``output_dir``: write every result there
    instead of over the committed study (its numbers.json starts as a copy of the
    committed one, so a partial run still builds a complete paper)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    paths = notebooks(only)
    per_nb = split_parameters(paths, params or {})
    if output_dir is not None:
        output_dir = output_dir.resolve()
        numbers = output_dir / "paper" / "numbers.json"
        if not numbers.exists() and (paper_dir() / "numbers.json").exists():
            numbers.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paper_dir() / "numbers.json", numbers)
    times: dict[str, float] = {}
    total = time.perf_counter()
    with _output_root(output_dir):
        for i, path in enumerate(paths, 1):
            shown = ", ".join(f"{k}={v!r}" for k, v in per_nb[path].items())
            log(f"[{i}/{len(paths)}] {path.name}" + (f" ({shown})" if shown else "") + " ...")
            if output_dir is None:
                times[path.name] = run_notebook(path, per_nb[path])
            else:
                times[path.name] = run_notebook(path, per_nb[path],
                                                output_dir / "notebooks" / path.name,
                                                output_dir / "build" / "failed")
            log(f"[{i}/{len(paths)}] {path.name} done in {times[path.name]:.1f} s")
        if paper:
            from rmaplab import paper as paper_mod

            start = time.perf_counter()
            pdf = paper_mod.build()
            times["paper"] = time.perf_counter() - start
            log(f"paper: {_shown(pdf)} built in {times['paper']:.1f} s")
    log(f"reproduce: {len(paths)} notebook(s) in {time.perf_counter() - total:.1f} s"
        + (f"; results in {output_root() if output_dir is None else output_dir}"))
    return times
