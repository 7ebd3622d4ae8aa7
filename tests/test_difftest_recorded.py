"""Recorded difftest campaigns: the loader on a hand-made campaign, and the committed data."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from rmaplab import integrity
from rmaplab.difftest import recorded
from rmaplab.errors import RmaplabError
from rmaplab.paths import raw_dir

SPAWN = {"op": "spawn", "pid": 1}
FORK = {"op": "fork", "pid": 1, "child": 2}
EXIT = {"op": "exit", "pid": 1}
HEADER = "seed,policy,events,agree,error,kernel_anon_vma_alloc,kernel_avc_alloc," \
         "model_anon_vma_alloc,model_avc_alloc\n"


def campaign(root, name, backend, programs, rows, kernel=None):
    d = root / "difftest" / name
    d.mkdir(parents=True)
    meta = {"host": {"kernel_release": "6.18.0-test"},
            "summary": {"backend": backend, "merge_rule": "singular"},
            "command": f"rmaplab difftest --backend {backend}"}
    if kernel:
        meta["kernel"] = {"version": kernel}
    (d / "metadata.json").write_text(json.dumps(meta))
    (d / "results.csv").write_text(HEADER + "".join(r + "\n" for r in rows))
    with gzip.open(d / "programs.jsonl.gz", "wt") as f:
        for seed, events in programs.items():
            f.write(json.dumps({"seed": seed, "events": events}) + "\n")
    return d


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    progs = {1: [SPAWN], 2: [SPAWN, FORK], 3: [SPAWN, EXIT]}
    dirs = [
        campaign(root, "h1", "host", progs, [
            "1,v6.0,1,True,,1,2,1,2",
            "2,v6.0,2,False,,1,5,1,4",     # avc_alloc differs
            "3,v6.0,2,False,interpreter died,,,1,2"]),
        # seed 1 again, the same program, written with its keys in another order
        campaign(root, "h2", "host", {1: [{"pid": 1, "op": "spawn"}]},
                 ["1,v6.0,1,True,,1,2,1,2"]),
        campaign(root, "u", "uml", {1: [SPAWN]},
                 ["1,v5.4,1,True,,1,2,1,2", "1,v6.0,1,True,,1,2,1,2"], kernel="6.12.1"),
    ]
    integrity.add([root / "difftest"], root)
    return root, dirs


def test_summary_of_a_hand_made_campaign(raw):
    root, dirs = raw
    table = recorded.summary(recorded.load(dirs, root)).set_index(["backend", "policy"])
    # host: 4 runs of 3 programs (seed 1 twice); seed 1 agrees, seed 2 disagrees, seed 3
    # failed; events over the 3 distinct programs 1 + 2 + 2; 2 counters compared.
    host = table.loc[("host", "v6.0")]
    assert set(recorded.load(dirs[2:], root)["command"]) == {"rmaplab difftest --backend uml"}
    assert (host.kernel, host.runs, host.programs, host.agreeing, host.disagreeing,
            host.errors, host.seeds, host.events, host.counters) == \
           ("6.18.0-test", 4, 3, 1, 1, 1, 3, 5, 2)
    for policy in ("v5.4", "v6.0"):
        uml = table.loc[("uml", policy)]
        assert (uml.kernel, uml.runs, uml.programs, uml.agreeing, uml.disagreeing,
                uml.errors, uml.events) == ("6.12.1", 1, 1, 1, 0, 0, 1)


def test_a_modified_recorded_file_is_refused(raw):
    root, dirs = raw
    f = dirs[0] / "results.csv"
    f.write_text(f.read_text().replace("1,5,1,4", "1,4,1,4"))
    with pytest.raises(RmaplabError, match="does not match its sha256"):
        recorded.load(dirs, root)


def committed() -> pd.DataFrame:
    return recorded.load(sorted(p for p in (raw_dir() / "difftest").iterdir() if p.is_dir()))


def test_committed_agree_means_every_counter_equal():
    results = committed()
    done = results[results["error"] == ""]
    for campaign, g in done.groupby("campaign"):
        names = [c[len("kernel_"):] for c in g.columns
                 if c.startswith("kernel_") and g[c].notna().all()]
        assert len(names) >= 10, campaign
        equal = pd.concat([g[f"kernel_{n}"] == g[f"model_{n}"] for n in names], axis=1).all(axis=1)
        assert (g["agree"] == equal).all(), campaign
