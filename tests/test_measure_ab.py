"""`rmaplab measure` as an A/B tool, and `compare` reading its results.

The live tests run tiny commands: `/bin/true` against a dash that forks one subshell
(one fork copying dash's anon VMAs: more anon_vma and AVC allocations, every run).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys

import pytest

from rmaplab import timings
from rmaplab.cli.measure_cmds import measured_commands
from rmaplab.errors import RmaplabError

A, B = "/bin/true", "/bin/sh -c '(/bin/true)'"


def rmaplab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "rmaplab", *args], capture_output=True,
                          text=True, **kw)


def ns(command=(), cmd=(), label=None):
    return argparse.Namespace(command=list(command), cmd=list(cmd), label=label)


def test_commands_from_names_and_double_dashes():
    got = measured_commands(ns([("A", "/bin/true"), ("B", "sh -c 'echo a b'")],
                               ["--", "ls", "-l", "--", "echo", "x"]))
    assert got == [("A", ["/bin/true"]), ("B", ["sh", "-c", "echo a b"]),
                   ("ls -l", ["ls", "-l"]), ("echo x", ["echo", "x"])]
    assert measured_commands(ns(cmd=["--", "make", "-j2"], label="kb")) == [("kb", ["make", "-j2"])]
    for bad, message in ((ns(), "no command to measure"),
                         (ns([("A", "x"), ("A", "y")]), "two commands are named 'A'"),
                         (ns(cmd=["--", "a", "--", "--", "b"]), "empty command between"),
                         (ns([("A", "sh -c 'unclosed")]), "No closing quotation"),
                         (ns([("A", "  ")]), "-n A is empty")):
        with pytest.raises(RmaplabError, match=message):
            measured_commands(bad)


def write_measurement(directory, rows, labels):
    directory.mkdir()
    fields = ["order", "label", "run", "warmup", "exit_status", "failed", "real", "user", "sys",
              "anon_vma_alloc", "avc_alloc"]
    with open(directory / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(dict(zip(fields, r, strict=True)) for r in rows)
    (directory / "metadata.json").write_text(json.dumps(
        {"conditions": [{"label": x} for x in labels]}))


def test_a_measurement_directory_loads_times_and_counters_in_command_order(tmp_path):
    d = tmp_path / "m"
    write_measurement(d, [
        (1, "B", 0, "True", 0, "False", 0.5, 0.1, 0.2, 9, 20),      # a warm-up
        (2, "B", 1, "False", 0, "False", 0.4, 0.1, 0.2, 9, 20),
        (3, "A", 1, "False", 0, "False", 0.3, 0.1, 0.1, 7, 10),
        (4, "A", 2, "False", 3, "True", 0.3, 0.1, 0.1, 7, 10),      # failed: status kept
    ], labels=["A", "B"])
    df = timings.to_frame(timings.load(d))
    assert list(dict.fromkeys(df.group)) == ["A", "B"]
    assert set(df.metric) == {"real", "user", "sys", "anon_vma_alloc", "avc_alloc"}
    warm = df[df.kind == "warmup"]
    assert set(warm["order"]) == {1} and len(warm) == 5
    counts = df[(df.metric == "avc_alloc") & (df.kind == "run")]
    assert counts.set_index("order")["seconds"].to_dict() == {2: 20.0, 3: 10.0, 4: 10.0}
    assert df[df.order == 4]["exit_status"].eq(3).all()


GOOD = [(1, "A", 1, "False", 0, "False", 0.3, 0.1, 0.1, 7, 10),
        (2, "B", 1, "False", 0, "False", 0.4, 0.1, 0.2, 9, 20)]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "metadata.json").write_text("{oops"), r"metadata.json:1: not valid JSON"),
    (lambda d: (d / "metadata.json").write_text("[1]"), r"metadata.json: expected an object"),
    (lambda d: (d / "metadata.json").write_text('{"conditions": ["A"]}'),
     r"metadata.json: expected an object whose 'conditions'"),
    (lambda d: (d / "metadata.json").write_bytes(b"\xff{}"), r"metadata.json: not valid UTF-8"),
    (lambda d: (d / "runs.csv").write_bytes(b"order,label\n1,\xff\n"),
     r"runs.csv: not valid UTF-8"),
    (lambda d: (d / "runs.csv").write_text("order,real,user,sys\n1,1,1,1\n"),
     r"runs.csv:1: no label column"),
    (lambda d: (d / "runs.csv").write_text(
        (d / "runs.csv").read_text().replace(",0.4,0.1,0.2,9,", ",0.4,0.1,0.2,nan,")),
     r"runs.csv:3: run 2: anon_vma_alloc is 'nan', not a count"),
    (lambda d: (d / "runs.csv").write_text(
        (d / "runs.csv").read_text().replace("\n2,B,", "\n1,B,")),
     r"runs.csv:3: order 1 twice \(also at line 2\)"),
])
def test_a_damaged_measurement_directory_is_one_error_naming_the_file(tmp_path, damage,
                                                                     message):
    """Found by review: tracebacks (JSONDecodeError, AttributeError, KeyError,
    UnicodeDecodeError), a count of nan dropped unseen, duplicate run orders accepted."""
    d = tmp_path / "m"
    write_measurement(d, GOOD, labels=["A", "B"])
    timings.load(d)                          # sound before the damage
    damage(d)
    with pytest.raises(RmaplabError, match=message):
        timings.load(d)
    out = rmaplab("compare", str(d))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_compare_reads_measure_json_from_standard_input(tmp_path):
    runs = [{"order": i, "label": "A" if i % 2 else "B", "run": i, "warmup": False,
             "exit_status": 0, "failed": False, "real": 1.0 + i / 100, "user": 0.5, "sys": 0.25,
             "anon_vma_alloc": 7 if i % 2 else 28, "avc_alloc": 10 if i % 2 else 46}
            for i in range(1, 13)]
    text = json.dumps({"commands": [{"label": "A", "runs": [r for r in runs if r["label"] == "A"]},
                                    {"label": "B", "runs": [r for r in runs if r["label"] == "B"]}]})
    out = rmaplab("compare", "-", "--json", input=text)
    assert out.returncode == 0, out.stderr
    by = {m["metric"]: m for m in json.loads(out.stdout)["metrics"]}
    assert set(by) == {"real", "user", "sys", "anon_vma_alloc", "avc_alloc"}
    assert by["anon_vma_alloc"]["mean_a"] == 7 and by["anon_vma_alloc"]["pct_change"] == 300.0
    # 6 vs 6 runs, every B above every A: the exact two-sided Mann-Whitney p is 2/C(12,6)
    assert by["avc_alloc"]["p_mannwhitney"] == pytest.approx(2 / 924)


@pytest.mark.perf
def test_measure_ab_into_compare_times_and_counters(live_kernel, tmp_path):
    out = rmaplab("measure", "--runs", "5", "--warmups", "1", "--seed", "3", "--out",
                  str(tmp_path), "--json", "-n", "A", A, "-n", "B", B)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    a, b = result["commands"]
    assert (a["label"], b["label"]) == ("A", "B") and a["cmd"] == ["/bin/true"]
    assert a["spread"]["real"]["n"] == 5 and a["spread"]["real"]["sd"] >= 0
    assert a["mm_forks"] == 0 and b["mm_forks"] == 1
    where = result["raw"]
    order = json.loads((tmp_path / where.rsplit("/", 1)[1] / "metadata.json").read_text())["order"]
    assert order[:2] == ["A#warmup", "B#warmup"] and sorted(order[2:]) == sorted(
        [f"{x}#{i}" for x in "AB" for i in range(1, 6)])
    assert order[2:] != sorted(order[2:])              # interleaved, not A then B
    cmp = rmaplab("compare", where, "--json")
    assert cmp.returncode == 0, cmp.stderr
    report = json.loads(cmp.stdout)
    by = {m["metric"]: m for m in report["metrics"]}
    assert {"real", "user", "sys", "anon_vma_alloc", "avc_alloc"} <= set(by)
    assert report["design"] == "interleaved"
    assert by["anon_vma_alloc"]["mean_a"] == a["anon_vma_alloc"]
    assert by["anon_vma_alloc"]["mean_b"] == b["anon_vma_alloc"] > a["anon_vma_alloc"]
    assert by["anon_vma_alloc"]["verdict"].startswith("change")
    assert by["real"]["n_a"] == by["real"]["n_b"] == 5
    # the same campaign piped: measure --json | compare -
    piped = rmaplab("compare", "-", "--json", input=out.stdout)
    assert piped.returncode == 0, piped.stderr
    same = {m["metric"]: m for m in json.loads(piped.stdout)["metrics"]}
    assert set(same) == set(by)
    for metric in by:
        assert (same[metric]["mean_a"], same[metric]["mean_b"]) == pytest.approx(
            (by[metric]["mean_a"], by[metric]["mean_b"]))


@pytest.mark.perf
def test_a_failing_command_fails_measure_with_its_own_status_unless_ignored(live_kernel,
                                                                            tmp_path):
    failing = "/bin/sh -c 'exit 3'"
    out = rmaplab("measure", "--no-record", "--runs", "2", "-n", "ok", A, "-n", "bad", failing)
    assert out.returncode == 3, out.stderr
    assert "failed runs: 2 (exit status 3, 3)" in out.stdout
    out = rmaplab("measure", "--no-record", "--json", "-i", "-n", "ok", A, "-n", "bad", failing)
    assert out.returncode == 0, out.stderr
    bad = json.loads(out.stdout)["commands"][1]
    assert [r["exit_status"] for r in bad["runs"]] == [3]


@pytest.mark.perf
def test_prepare_runs_before_every_run_and_a_missing_command_is_one_line(live_kernel, tmp_path):
    log = tmp_path / "prepared"
    out = rmaplab("measure", "--no-record", "--runs", "2", "--warmups", "1", "--prepare",
                  f"/bin/sh -c 'echo x >> {log}'", "-n", "A", A, "-n", "B", B)
    assert out.returncode == 0, out.stderr
    assert log.read_text().count("x") == 2 * (2 + 1)
    out = rmaplab("measure", "--no-record", "-n", "A", A, "-n", "B", "no-such-command-xyz")
    assert out.returncode == 2
    assert out.stderr.strip() == "rmaplab measure: error: command not found: no-such-command-xyz"
