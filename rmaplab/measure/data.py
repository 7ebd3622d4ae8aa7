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


def latest(kind: str) -> Path:
    """The newest complete measurement (campaigns stopped half-way are named *-incomplete)."""
    dirs = [d for d in measurement_dirs(kind) if not re.search(r"-incomplete(-\d+)?$", d.name)]
    if not dirs:
        raise RmaplabError(f"no recorded measurements in data/raw/{kind}",
                           hint={"kbuild": "make kbuild-campaign",
                                 "micro": "rmaplab micro --record",
                                 "cost": "rmaplab forkcost"}.get(kind))
    return dirs[-1]


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
