"""Parameter sweeps on dask.distributed: (workload, policy, parameters, seed) grids.

A cell is a plain dict; :func:`run_cell` replays it and never raises: a failure is a
result with ``status = "failed"`` and the error, so one bad cell does not stop a
sweep.  Results are written one Parquet file per cell into a dataset partitioned
by policy (``OUT/policy=v6.0/<cell id>.parquet``), atomically, as they arrive; a
rerun skips every cell whose result is already there with ``status = "ok"``.
A ``LocalCluster`` (one process per worker) is started unless a scheduler address
is given.  Measurements never run here: replays only.

Cell kinds:
``{"kind": "micro", "workload": "split", "k": 16, "n": 10, "policy": ...}``
``{"kind": "generated", "units": 2.0, "shell": "sh", "make_forks": true,
   "shell_forks": true, "jobs": 2, "seed": 0, "policy": ...}`` (rmaplab.generator.Params;
   a cell without ``shell_forks`` has it false, so cells recorded before it existed keep
   their ids)
``{"kind": "trace", "trace": "data/raw/traces/<dir>/trace.jsonl.gz", "policy": ...}`` (a
   path relative to the repository, so the cell id does not depend on the checkout; a
   raw trace is checked against the manifest before it is read)

Optional keys of any cell: ``"merge_rule"`` (default: the policy's own), ``"walks": true``
(the result's ``walks`` column holds the rmap-walk-length histogram as JSON rows), and
for generated cells ``"identity": true`` (the recorded build, no resampling).

``policy`` is any policy spec (rmaplab.model.plugins): the source of a plug-in file
is shipped to the workers with the cells, so a sweep with ``PATH.py:Class`` runs on a
cluster whose machines do not have the file; its results are stored under the
plug-in's name (``OUT/policy=<name>/``), with the spec in ``policy_spec``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from rmaplab.errors import RmaplabError

RESULT_COUNTERS = ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc",
                   "avc_fork", "avc_clone", "avc_prepare", "vma_alloc", "mm_forks",
                   "peak_anon_vma", "peak_avc", "peak_bytes_618", "peak_bytes_v54",
                   "reuse_at_fork", "share_at_fork", "fork_anon_vmas", "fork_chain_sum",
                   "fork_walk_sum", "fork_walk_max", "depth_max", "anon_vma_lock",
                   "avc_alloc_locked", "anon_vma_deferred", "anon_vma_materialized")


def cell_id(cell: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:16]


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes, e.g. grid(kind=["generated"], policy=[...], seed=range(3))."""
    names = list(axes)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(list(axes[n]) for n in names))]


def _events(cell: dict[str, Any]):
    from rmaplab import traces, workloads

    kind = cell.get("kind")
    if kind == "micro":
        if cell["workload"] not in workloads.WORKLOADS:
            raise RmaplabError(f"unknown workload {cell['workload']!r}")
        return workloads.numbered(workloads.WORKLOADS[cell["workload"]](cell["k"], cell["n"]))
    if kind == "generated":
        from rmaplab.generator import Params, generate

        return generate(Params(units=float(cell["units"]), shell=cell["shell"],
                               make_forks=bool(cell["make_forks"]),
                               shell_forks=bool(cell.get("shell_forks", False)),
                               jobs=int(cell["jobs"]), seed=int(cell["seed"]),
                               identity=bool(cell.get("identity"))))
    if kind == "trace":
        return traces.read(_trace_path(cell["trace"]))
    raise RmaplabError(f"unknown cell kind {kind!r}")


def _trace_path(name: str) -> Path:
    from rmaplab import integrity
    from rmaplab.paths import repo_root

    path = Path(name)
    if path.is_absolute():
        return path
    if path.parts[:2] == ("data", "raw"):
        return integrity.raw_path(str(Path(*path.parts[2:])))
    return repo_root() / path


def run_cell(cell: dict[str, Any], plugin_sources: dict[str, str] | None = None
             ) -> dict[str, Any]:
    """Replay one cell; the result row (status "ok" or "failed" with the error).

    ``plugin_sources`` maps plug-in file specs to their source (see :func:`sweep`)."""
    from rmaplab.model import get_policy, plugins
    from rmaplab.traces import replay

    row: dict[str, Any] = {**cell, "cell": cell_id(cell), "host": os.uname().nodename}
    start = time.perf_counter()
    try:
        walks = bool(cell.get("walks"))
        spec = cell["policy"]
        source = (plugin_sources or {}).get(spec)
        policy = plugins.load(spec, source) if source is not None else get_policy(spec)
        if policy.spec is not None:
            row["policy_spec"] = spec
            row["policy_name"] = policy.name
        result = replay(_events(cell), policy=policy, merge_rule=cell.get("merge_rule"),
                        check="off", walks=walks)
        row.update({k: result.counters[k] for k in RESULT_COUNTERS})
        row["merge_rule"] = result.merge_rule
        row["events"] = result.events
        if walks:
            row["walks"] = json.dumps(result.walks.rows())
        row["status"] = "ok"
        row["error"] = ""
    except Exception as e:  # noqa: BLE001 - a failed cell is data, never a crash
        row["status"] = "failed"
        row["error"] = f"{type(e).__name__}: {e}"
        row["traceback"] = traceback.format_exc(limit=5)
    row["elapsed_s"] = time.perf_counter() - start
    return row


def _path(out: Path, row: dict[str, Any]) -> Path:
    name = row.get("policy_name") or row["policy"]
    return out / f"policy={re.sub(r'[^A-Za-z0-9._-]', '_', name)}" / f"{row['cell']}.parquet"


def finished(out: Path) -> set[str]:
    """Cell ids with an ok result already in the dataset."""
    if not out.exists():
        return set()
    done = set()
    for f in out.glob("policy=*/*.parquet"):
        try:
            status = pd.read_parquet(f, columns=["status"])["status"].iloc[0]
        except Exception:  # noqa: BLE001 - an unreadable partial file is simply redone
            continue
        if status == "ok":
            done.add(f.stem)
    return done


def _write(out: Path, row: dict[str, Any]) -> None:
    from rmaplab import atomic

    path = _path(out, row)
    frame = pd.DataFrame([{k: v for k, v in row.items() if k not in ("policy", "policy_name")}])
    frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic.write_bytes(path, buf.getvalue())


def sweep(cells: list[dict[str, Any]], out: Path, scheduler: str | None = None,
          workers: int | None = None, log: Callable[[str], None] | None = None
          ) -> dict[str, int]:
    """Run the cells not yet done on dask.distributed; write each result as it arrives."""
    from dask.distributed import Client, LocalCluster, as_completed

    from rmaplab.model import plugins

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out)
    done = finished(out)
    todo = [c for c in cells if cell_id(c) not in done]
    counts = {"cells": len(cells), "skipped": len(cells) - len(todo), "ok": 0, "failed": 0}
    log(f"sweep: {len(cells)} cells, {counts['skipped']} already done, {len(todo)} to run")
    if not todo:
        return counts
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise RmaplabError(f"cannot connect to the dask scheduler at {scheduler} ({e})",
                               hint="is `dask scheduler` running there?") from None
    else:
        # No dashboard; its HTTP server still starts, on a free port rather than 8787
        # (which may be taken, and dask then warns on stderr).
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"})
        client = Client(cluster)
    sources: dict[str, str] = {}
    for spec in {c["policy"] for c in todo}:
        try:
            sources.update(plugins.sources([spec]))
        except RmaplabError:
            pass                                   # its cells fail and say why
    try:
        futures = client.map(run_cell, todo, plugin_sources=sources, pure=False)
        for i, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            _write(out, row)
            counts[row["status"]] += 1
            what = ", ".join(f"{k}={v}" for k, v in row.items()
                             if k in ("kind", "workload", "units", "shell", "make_forks",
                                      "shell_forks", "seed", "policy"))
            log(f"  [{i}/{len(todo)}] {row['status']} in {row['elapsed_s']:.1f} s: {what}"
                + (f" ({row['error']})" if row["status"] == "failed" else ""))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return counts


def load(out: Path) -> pd.DataFrame:
    """The sweep's results (every cell, ok or failed) as one frame.

    Files are read one by one and concatenated, because failed cells carry no counter
    columns and Parquet readers take the schema of the first file they meet.
    """
    out = Path(out)
    files = sorted(out.glob("policy=*/*.parquet"))
    if not files:
        raise RmaplabError("no sweep results here", path=out)
    frames = []
    for f in files:
        frame = pd.read_parquet(f)
        frame["policy"] = f.parent.name.split("=", 1)[1]
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    if "make_forks" in out:             # generated cells; other kinds have NA here
        out["make_forks"] = out["make_forks"].astype("boolean")
        if "shell_forks" not in out:
            out["shell_forks"] = pd.NA
        out["shell_forks"] = out["shell_forks"].astype("boolean").mask(
            out["make_forks"].notna() & out["shell_forks"].isna(), False)
    return out
