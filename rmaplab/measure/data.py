"""Read recorded measurements back, checked against the raw-data manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from rmaplab import integrity
from rmaplab.errors import RmaplabError
from rmaplab.paths import raw_dir


def measurement_dirs(kind: str) -> list[Path]:
    """Recorded measurement directories under data/raw/<kind>/, oldest first."""
    root = raw_dir() / kind
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# How each kind of campaign is recorded (what to run when one is missing).
CAMPAIGN_COMMANDS = {"kbuild": "make kbuild-campaign", "micro": "rmaplab micro --record",
                     "cost": "rmaplab forkcost --design state", "objects": "make cost-campaign",
                     "ceiling": "make ceiling-campaign"}


def _complete(dirs: list[Path]) -> list[Path]:
    """Campaigns stopped half-way are named *-incomplete (rmaplab.measure.record)."""
    return [d for d in dirs if not re.search(r"-incomplete(-\d+)?$", d.name)]


def campaigns(kind: str) -> list[Path]:
    """Every complete measurement of ``kind``, oldest first."""
    return _complete(measurement_dirs(kind))


def latest(kind: str) -> Path:
    """The newest complete measurement."""
    dirs = _complete(measurement_dirs(kind))
    if not dirs:
        raise RmaplabError(f"no recorded measurements in data/raw/{kind}",
                           hint=CAMPAIGN_COMMANDS.get(kind))
    return dirs[-1]


def recorded(kind: str, filename: str, name: str | None = None) -> Path | None:
    """data/raw/<kind>/<name>, or the newest complete one holding ``filename``; None when
    no such campaign is recorded (a named one that is missing is an error)."""
    if name is not None:
        path = raw_dir() / kind / name
        if not (path / filename).exists():
            raise RmaplabError(f"no {filename} in data/raw/{kind}/{name}",
                               hint=f"ls data/raw/{kind}/")
        return path
    return newest_with(kind, filename)


def not_recorded(kind: str) -> str:
    """What a notebook section says when its campaign is not recorded."""
    return (f"NOT MEASURED: no {kind} campaign is recorded under data/raw/{kind}/ (run "
            f"`{CAMPAIGN_COMMANDS[kind]}` on a quiet machine and commit its directory). This "
            "section has no results; nothing from it goes to paper/numbers.json.")


def latest_named(kind: str, suffix: str) -> Path:
    """The newest measurement directory under data/raw/<kind>/ whose name ends with
    ``suffix`` (names are ``<UTC time>-<label>``)."""
    dirs = [d for d in measurement_dirs(kind) if d.name.endswith(suffix)]
    if not dirs:
        raise RmaplabError(f"no recorded measurement named *{suffix} in data/raw/{kind}")
    return dirs[-1]


def live_counts(trace_dir: Path) -> dict[str, int]:
    """The kernel's counts of a traced run (live_counts.json), checked against the manifest."""
    rel = trace_dir.resolve().relative_to(raw_dir().resolve())
    return json.loads(integrity.raw_path(str(rel / "live_counts.json")).read_text())


def load(directory: Path) -> tuple[pd.DataFrame, dict]:
    """runs.csv and metadata.json of one measurement, after checking their sha256."""
    rel = directory.resolve().relative_to(raw_dir().resolve())
    runs = pd.read_csv(integrity.raw_path(str(rel / "runs.csv")))
    meta = json.loads(integrity.raw_path(str(rel / "metadata.json")).read_text())
    return runs, meta


def timing_frame(runs: pd.DataFrame, source: str) -> pd.DataFrame:
    """Measured runs as tidy timing records (rmaplab.timings schema) for rmaplab.stats."""
    good = runs[(~runs["warmup"].astype(bool)) & (~runs["failed"].astype(bool))]
    rows = []
    for _, r in good.iterrows():
        for metric in ("real", "user", "sys"):
            rows.append({"source": source, "line": int(r["order"]), "group": r["label"],
                         "run": int(r["run"]), "metric": metric, "seconds": float(r[metric]),
                         "kind": "run", "n": 1, "format": "rmaplab-measure"})
    return pd.DataFrame(rows)


def read_recorded(path: Path) -> bytes:
    """A recorded file: checked against the manifest when it lies under data/raw (test
    fixtures and campaigns written elsewhere are read as they are)."""
    try:
        rel = path.resolve().relative_to(raw_dir().resolve())
    except ValueError:
        return path.read_bytes()
    return integrity.raw_path(str(rel)).read_bytes()


def newest_with(kind: str, filename: str) -> Path | None:
    """The newest recorded data/raw/<kind>/ directory that holds ``filename``."""
    dirs = [d for d in _complete(measurement_dirs(kind)) if (d / filename).exists()]
    return dirs[-1] if dirs else None
