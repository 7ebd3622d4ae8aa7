"""Resumable campaigns: finished runs are kept on disk until the campaign is published.

A campaign stages each finished run (its files and its row) under
``$RMAPLAB_CACHE/staging/<kind>/<label>-<config hash>/`` as soon as the run ends.  If
the campaign stops (a crash, ^C, a reboot), running the same command again finds
the staging directory by the hash of its configuration and runs only what is
missing.  When every run is done, :meth:`Staging.publish` writes the new raw
directory with :func:`rmaplab.measure.record.save` and removes the staging directory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rmaplab import atomic
from rmaplab.measure.record import save
from rmaplab.paths import cache_dir

ROWS = "rows.jsonl"


def config_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def rows_csv(rows: Iterable[dict[str, Any]]) -> str:
    rows = list(rows)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class Staging:
    """The finished runs of one campaign (``kind``: kbuild, ceiling, cost, ...)."""

    def __init__(self, kind: str, label: str, config: dict[str, Any],
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.label = label
        self.dir = cache_dir() / "staging" / kind / f"{label}-{config_key(config)}"
        self.files = self.dir / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        info = self.dir / "config.json"
        if info.exists():
            self.started = json.loads(info.read_text())["started"]
            self.rows = self._read_rows()
            self.resumed = True
            log(f"resuming {self.dir.name}: {len(self.rows)} run(s) already done")
        else:
            self.started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            atomic.write_text(info, json.dumps({"config": config, "started": self.started},
                                               indent=1, default=str) + "\n")
            self.rows = {}
            self.resumed = False

    def _read_rows(self) -> dict[int, dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        path = self.dir / ROWS
        if not path.exists():
            return rows
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue     # a line cut short by a crash: that run is simply redone
            rows[int(row["order"])] = row
        return rows

    def done(self, order: int) -> bool:
        return order in self.rows

    def add(self, order: int, row: dict[str, Any], files: dict[str, bytes]) -> None:
        """Keep one finished run: its files first, then its row (the row marks it done)."""
        for name, data in files.items():
            atomic.write_bytes(self.files / name, data)
        row = {"order": order, **row}
        with open(self.dir / ROWS, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[order] = row

    @property
    def name(self) -> str:
        """``<start time>-<label>``: the raw directory's name (kept across resumes)."""
        return f"{self.started}-{self.label}"

    def files_of(self, order: int) -> dict[str, bytes]:
        """The files staged for run ``order`` (named ``run-NNN.*``)."""
        return {p.name: p.read_bytes() for p in sorted(self.files.glob(f"run-{order:03d}.*"))}

    def publish(self, out_root: Path, meta: dict[str, Any],
                extra: dict[str, str] | None = None) -> Path:
        """Write ``out_root/<start time>-<label>/`` (runs.csv, metadata.json, the files)
        through :func:`rmaplab.measure.record.save` (atomic, never overwritten, added to
        the manifest under data/raw), then drop the staging directory."""
        rows = [self.rows[k] for k in sorted(self.rows)]

        def write(d: Path) -> None:
            for path in sorted(self.files.iterdir()):
                shutil.copyfile(path, d / path.name)
            (d / "runs.csv").write_text(rows_csv(rows))
            (d / "metadata.json").write_text(
                json.dumps({**meta, "started_utc": self.started, "resumed": self.resumed},
                           indent=1, default=str) + "\n")
            for name, text in (extra or {}).items():
                (d / name).write_text(text)

        target = save(out_root, self.name, write)
        shutil.rmtree(self.dir)
        return target
