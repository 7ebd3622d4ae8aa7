"""The command line: help for every subcommand, --json contracts, errors exit 2 without traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rmaplab.cli import COMMANDS, main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmaplab", *args], capture_output=True,
                          text=True)


def test_top_level_help_lists_every_command():
    out = run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_has_help(name):
    out = run(name, "--help")
    assert out.returncode == 0
    assert "usage: rmaplab " + name in out.stdout
    assert len(out.stdout.splitlines()) > 3


def test_timings_json_follows_the_contract(seed_file):
    out = run("timings", str(seed_file), "--json")
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert len(records) == 18
    for key in ("source", "line", "group", "run", "metric", "seconds"):
        assert key in records[0]
    assert {r["metric"] for r in records} == {"real", "user", "sys"}


def test_compare_json_on_the_seed_email(seed_file):
    out = run("compare", str(seed_file), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [m["metric"] for m in result["metrics"]] == ["real", "user", "sys"]
    sys_row = result["metrics"][2]
    for key in ("metric", "n_a", "n_b", "mean_a", "mean_b", "pct_change", "ci_low", "ci_high",
                "p_welch", "p_mannwhitney", "p_permutation", "p_min"):
        assert key in sys_row
    assert sys_row["n_a"] == 3 and sys_row["p_min"] == pytest.approx(0.1)
    assert sys_row["p_mannwhitney_method"] == "exact" and sys_row["ci_method"] == "fieller-welch"
    assert sys_row["pct_change"] == pytest.approx(-11.68, abs=0.01)


def test_compare_table_on_the_seed_email(seed_file):
    out = run("compare", str(seed_file))
    assert out.returncode == 0
    assert "A = Origin" in out.stdout and "B = Patched" in out.stdout
    assert "user time changed" in out.stdout


def test_compare_two_files(timing_file):
    out = run("compare", str(timing_file("perf_stat_single.txt")),
              str(timing_file("perf_stat_csv.txt")), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["design"] == "unknown"


@pytest.mark.parametrize("args, message", [
    (["compare", "/no/such/file"], "no such file"),
    (["compare", "SEED", "--alpha", "2"], "--alpha must be above 0 and below 0.5"),
    (["compare", "SEED", "--groups", "Origin,Nope"], "no group 'Nope'"),
    (["timings", "EDGE/garbage.txt"], "no timing output recognised"),
    (["compare", "EDGE/one_run_group.txt"], "A has a single real run"),
    (["timings", "--time-format", "%Q", "EDGE/garbage.txt"], "%Q is not supported"),
    (["reproduce", "-p", "no_such_parameter", "1", "--no-paper"], "unknown notebook parameter"),
])
def test_errors_exit_2_with_one_line_and_no_traceback(args, message, seed_file, timing_file):
    edge = str(timing_file("edge"))
    args = [a.replace("SEED", str(seed_file)).replace("EDGE", edge) for a in args]
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--groups", "Origin,Origin"], "--groups names 'Origin' twice"),
    (["--groups", "Origin,"], "--groups takes two labels"),
    (["--metric", "sys", "--metric", "sys"], "--metric sys is given more than once"),
    (["--margin", "inf"], "--margin must be a percentage above 0 and below 100, got inf"),
    (["--margin", "0"], "--margin must be a percentage"),
    (["--target", "nan"], "--target must be a non-zero finite percentage above -100, got nan"),
    (["--target", "-100"], "--target must be"),
    (["--alpha", "0.9"], "--alpha must be above 0 and below 0.5, got 0.9"),
    (["--alpha", "nan"], "--alpha must be above 0"),
    (["--seed", "-1"], "--seed must be 0 or positive"),
])
def test_compare_refuses_bad_parameters_with_one_line(args, message, seed_file, capsys):
    assert main(["compare", str(seed_file), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_compare_warns_about_failed_runs_and_hyperfine_order(timing_file, capsys):
    assert main(["compare", str(timing_file("edge/hyperfine_failed_run.json")), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["design"] == "sequential" and "hyperfine" in result["design_note"]
    assert result["metrics"][0]["n_b"] == 4 and result["metrics"][0]["excluded_b"] == 1
    assert any("exited with a non-zero status" in w for w in result["warnings"])


def test_compare_verbose_shows_every_quantity(seed_file, capsys):
    assert main(["compare", str(seed_file), "--verbose"]) == 0
    out = capsys.readouterr().out
    for text in ("Hodges-Lehmann shift", "bootstrap (BCa)", "drift (Kendall tau",
                 "runs per side for", "geometric means", "TOST", "[rule R2]"):
        assert text in out


def test_bad_option_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        main(["compare", "--no-such-option"])
    assert e.value.code == 2


def test_commands_without_tables_do_not_import_pandas(tmp_path):
    """Building the parser (every command does) and replaying a trace import neither pandas
    nor scipy: they took 0.6 s of every `rmaplab replay` and `--help`."""
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"op": "spawn", "pid": 1}\n{"op": "mmap", "pid": 1, "start": 4096, '
                     '"end": 8192, "prot": "rw"}\n{"op": "touch", "pid": 1, "addr": 4096, '
                     '"write": true}\n{"op": "exit", "pid": 1}\n')
    code = ("import sys\nfrom rmaplab.cli import main\n"
            f"rc = main(['replay', {str(trace)!r}])\n"
            "heavy = sorted(m for m in ('pandas', 'scipy', 'numpy') if m in sys.modules)\n"
            "print(rc, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "0 []"
