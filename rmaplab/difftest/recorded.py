"""Recorded differential-testing campaigns (data/raw/difftest/*) as tables for the notebooks.

A campaign directory holds ``results.csv`` (one row per program and policy: seed, policy,
events, agree, error, ``kernel_*`` and ``model_*`` counters), ``programs.jsonl.gz`` (the
programs by seed) and ``metadata.json`` (backend, kernel, command).  Every file is checked
against data/raw/MANIFEST.sha256 before it is read.  Programs are identified by the
sha256 of their events, so "the same programs" on two backends is measured, not assumed
from the seeds (generator parameters change what a seed produces).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd

from rmaplab import integrity
from rmaplab.errors import RmaplabError
from rmaplab.paths import raw_dir

KERNEL, MODEL = "kernel_", "model_"


def program_id(events: list[dict]) -> str:
    """sha256 of a program's events in canonical JSON (key order does not matter)."""
    return hashlib.sha256(json.dumps(events, sort_keys=True).encode()).hexdigest()


def _programs(path: Path) -> dict[int, str]:
    ids: dict[int, str] = {}
    with gzip.open(path, "rt") as f:
        for i, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
                ids[int(obj["seed"])] = program_id(obj["events"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise RmaplabError("not a program line ({\"seed\": N, \"events\": [...]})",
                                   path=path, line=i) from None
    return ids


def counters(results: pd.DataFrame) -> list[str]:
    """The counters a campaign compared: those with both a kernel_ and a model_ column."""
    kernel = [c.removeprefix(KERNEL) for c in results.columns if c.startswith(KERNEL)]
    return [c for c in kernel if MODEL + c in results.columns]


def load(directories: list[Path], root: Path | None = None) -> pd.DataFrame:
    """The results of recorded campaigns as one table, one row per program and policy.

    Adds ``campaign``, ``backend`` (host or uml), ``kernel`` (the host's release, or the
    UML kernel's version), ``merge_rule``, ``command`` (what recorded it), ``program`` (see :func:`program_id`),
    ``counters`` (how many counters the campaign compared) and ``error`` as a string
    ("" when the run completed).
    """
    root = (root or raw_dir()).resolve()
    frames = []
    for d in directories:
        try:
            rel = Path(d).resolve().relative_to(root)
        except ValueError:
            raise RmaplabError("difftest campaign is not under data/raw", path=d) from None
        meta = json.loads(integrity.raw_path(f"{rel.as_posix()}/metadata.json", root).read_text())
        results = pd.read_csv(integrity.raw_path(f"{rel.as_posix()}/results.csv", root),
                              dtype={"error": str})
        programs = _programs(integrity.raw_path(f"{rel.as_posix()}/programs.jsonl.gz", root))
        missing = sorted(set(results["seed"]) - set(programs))
        if missing:
            raise RmaplabError(f"results.csv has seed {missing[0]} but programs.jsonl.gz does not",
                               path=root / rel / "programs.jsonl.gz")
        backend = meta["summary"]["backend"]
        results["campaign"] = rel.name
        results["backend"] = backend
        results["kernel"] = (meta["kernel"]["version"] if backend == "uml"
                             else meta["host"]["kernel_release"])
        results["merge_rule"] = meta["summary"]["merge_rule"]
        results["command"] = meta.get("command", "")
        results["program"] = results["seed"].map(programs)
        results["counters"] = len(counters(results))
        results["error"] = results["error"].fillna("")
        results["agree"] = results["agree"].astype(bool)
        frames.append(results)
    if not frames:
        raise RmaplabError("no difftest campaigns given")
    return pd.concat(frames, ignore_index=True)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per backend, kernel and policy: runs, distinct programs, programs whose every run
    agreed, programs with a disagreeing run, runs that failed on the kernel, distinct
    seeds, events over the distinct programs, counters compared per program."""
    rows = []
    for (backend, kernel, policy), g in results.groupby(["backend", "kernel", "policy"],
                                                        sort=False):
        done = g[g["error"] == ""]
        by_program = done.groupby("program")["agree"].all()
        rows.append({
            "backend": backend, "kernel": kernel, "policy": policy,
            "runs": len(g),
            "programs": g["program"].nunique(),
            "agreeing": int(by_program.sum()),
            "disagreeing": int((~by_program).sum()),
            "errors": int((g["error"] != "").sum()),
            "seeds": g["seed"].nunique(),
            "events": int(g.drop_duplicates("program")["events"].sum()),
            "counters": int(g["counters"].max()),
        })
    return pd.DataFrame(rows)
