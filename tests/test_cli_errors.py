"""Bad input on every command: exit status 2, one line on stderr naming the problem, no
traceback, no library warning, and nothing left behind.

``CASES`` is the corpus: a command line (``{name}`` is a path from the sandbox below), the
option or argument it gets wrong (as in ``--help``), and a fragment the error must contain.
Every case runs in a sandbox that is the current directory, ``$RMAPLAB_CACHE``,
``$RMAPLAB_ROOT`` (so data/raw is a scratch copy) and ``$TMPDIR`` at once, and the sandbox
must be byte-for-byte the same afterwards.

To add a command (``rmaplab kernel``, ``rmaplab difftest``...): add one line per option or
argument that takes a path or a number (a file that is missing, a directory, an empty file;
0, -1, a huge value, a non-number, nan; a repeated or inverted list).  A path or number
option with no line here fails ``test_every_path_or_number_option_is_in_the_corpus``.
Failures that need the live kernel (a command that exits non-zero, an output path that
breaks during the measurement) are the ``perf`` tests at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from rmaplab import atomic, traces
from rmaplab.cli import build_parser, main

SEED = ROOT / "data" / "raw" / "seed" / "lkml-2019-10-11-wei-yang-v4-2of2.txt"
FOUND = ROOT / "data" / "traces" / "search-v5.4-same-chain.jsonl"
UNWRITABLE = "/proc/rmaplab-test"      # no new entries under /proc, not even for root

CASES: list[tuple[str, str, str]] = [
    # command line                                        option          the error says
    ("--frob",                                            "",              "unrecognized arguments: --frob"),
    ("",                                                  "",              "no command given"),
    ("nosuch",                                            "COMMAND",       "invalid choice: 'nosuch'"),
    # timings, compare: file problems (their numbers are the statistics' own tests, #12)
    ("timings {missing}",                                 "FILE",          "no such file"),
    ("timings {dir}",                                     "FILE",          "is a directory"),
    ("timings {empty}",                                   "FILE",          "empty file"),
    ("compare {missing}",                                 "A",             "no such file"),
    ("compare {dir}",                                     "A",             "is a directory"),
    ("compare {seed} {empty}",                            "B",             "empty file"),
    # replay
    ("replay {missing}",                                  "TRACE",         "no such file"),
    ("replay {dir}",                                      "TRACE",         "is a directory"),
    ("replay {empty}",                                    "TRACE",         "is empty"),
    ("replay {comments}",                                 "TRACE",         "no events in this trace"),
    ("replay {badjson}",                                  "TRACE",         "badjson.jsonl:2: not valid JSON"),
    ("replay {badgz}",                                    "TRACE",         "cannot read trace"),
    ("replay {trace} --policy nope",                      "--policy",      "unknown policy 'nope'"),
    ("replay {trace} --policy {missing}:Cls",             "--policy",      "no such plug-in policy file"),
    ("replay {trace} --policy v6.0,v6.0",                 "--policy",      "given twice"),
    ("replay {trace} --jobs 0",                           "--jobs",        "got '0'"),
    ("replay {trace} --tolerance -1",                     "--tolerance",   "must be >= 0"),
    ("replay {trace} --validate",                         "TRACE",         "no live_counts.json beside the trace"),
    ("replay {trace} --validate --policy v5.4,v6.0",      "--policy",      "--validate takes one --policy"),
    # search
    ("search --policy nope",                              "--policy",      "unknown policy 'nope'"),
    ("search --policy {missing}:Cls",                     "--policy",      "no such plug-in policy file"),
    ("search --prefix {missing}",                         "--prefix",      "no such file"),
    ("search --jobs 0",                                   "--jobs",        "got '0'"),
    ("search --unsteered --jobs 999",                     "--jobs",        "from 1 to 256"),
    ("search --prefix {dir}",                             "--prefix",      "is a directory"),
    ("search --prefix {empty}",                           "--prefix",      "is empty"),
    ("search --prefix {badjson}",                         "--prefix",      ":2: not valid JSON"),
    ("search --prefix {dead}",                            "--prefix",      "no process is alive"),
    ("search --prefix {comments}",                        "--prefix",      "the prefix has no events"),
    ("search --prefix {found}",                           "--prefix",      "the prefix already breaks same-anon_vma-same-chain under v5.4 at its event"),
    ("search --prefix {trace} --drop-last 3",             "--drop-last",   "would leave nothing of the 3 events"),
    ("search --prefix {trace} --drop-last -1",            "--drop-last",   "must be a whole number >= 0"),
    ("search --drop-last 1",                              "--drop-last",   "applies to a --prefix trace"),
    ("search --budget 0",                                 "--budget",      "got '0'"),
    ("search --budget -1",                                "--budget",      "got '-1'"),
    ("search --budget 1e3",                               "--budget",      "not a whole number"),
    ("search --unsteered --seed -1",                      "--seed",        "must be a whole number >= 0"),
    ("search --seed x",                                   "--seed",        "not a whole number: 'x'"),
    ("search --unsteered --prefix {trace}",               "--unsteered",   "takes no --prefix"),
    ("search --violators",                                "--violators",   "goes with --unsteered"),
    ("search --unsteered --violators -o {dir}/v.jsonl",   "--violators",   "writes no trace"),
    ("replay {trace} --policy all,all",                   "--policy",      "'all' is given twice"),
    ("replay {trace} --policy {trace}:Cls",               "--policy",      "not a Python file (PATH.py:Class)"),
    ("sweep --kind trace --trace {badjson} --out {dir}/s", "--trace",       "badjson.jsonl:2: not valid JSON"),
    ("search --unsteered --budget 9 -o {dir}/s.json --summary {dir}/s.json", "-o", "-o and --summary name the same file"),
    ("search --prefix {trace} -o {trace}",                "-o",            "-o and --prefix name the same file"),
    ("search --budget 99999999999",                       "--budget",      "from 1 to 1000000000"),
    ("search -o {dir}",                                   "-o",            "is a directory; give a file name"),
    ("search -o /",                                       "-o",            "is a directory"),
    ("search -o " + UNWRITABLE + "/found.jsonl",          "-o",            "cannot create files in /proc"),
    ("search -o {text}/found.jsonl",                      "-o",            "is not a directory"),
    ("search --summary {dir}",                            "--summary",     "is a directory"),
    ("search --summary {text}",                           "--summary",     "not a search summary"),
    # measure (these fail before perf is needed)
    ("measure",                                           "",              "no command to measure"),
    ("measure --no-record -- /no/such/cmd",               "",              "command not found: /no/such/cmd"),
    ("measure --no-record -- no-such-command",            "",              "command not found: no-such-command"),
    ("measure --no-record -- {dir}",                      "",              "not an executable file"),
    ("measure --runs 0 -- true",                          "--runs",        "got '0'"),
    ("measure --runs -1 -- true",                         "--runs",        "got '-1'"),
    ("measure --runs x -- true",                          "--runs",        "not a whole number: 'x'"),
    ("measure --runs 1000000000 -- true",                 "--runs",        "from 1 to 100000"),
    ("measure --warmups -2 -- true",                      "--warmups",     "got '-2'"),
    ("measure --label ... -- true",                       "--label",       "at least one letter or digit"),
    ("measure --out {text} -- true",                      "--out",         "exists and is not a directory"),
    ("measure --out " + UNWRITABLE + " -- true",          "--out",         "cannot create files in /proc"),
    ("measure --out {dir} --no-record -- true",           "--out",         "contradict"),
    ("measure -n A",                                      "-n",            "expected 2 arguments"),
    ("measure -n A true -n A false",                      "-n",            "two commands are named 'A'"),
    ("measure -n A \"sh -c 'x\"",                         "-n",            "No closing quotation"),
    ("measure -n A ''",                                   "-n",            "-n A is empty"),
    ("measure -n , true",                                 "-n",            "a letter or digit and no comma"),
    ("measure --no-record -n A true -n B no-such-command", "",             "command not found: no-such-command"),
    ("measure -- true -- -- false",                       "",              "an empty command between two --"),
    ("measure --prepare /no/such -- true",                "--prepare",     "command not found: /no/such"),
    ("measure --prepare '' -- true",                      "--prepare",     "--prepare is empty"),
    ("measure --prepare true --prepare true --prepare true -n A true -n B true",
                                                          "--prepare",     "3 --prepare for 2 commands"),
    ("measure --seed -1 -- true",                         "--seed",        "from 0 to 4294967295"),
    ("measure --seed x -- true",                          "--seed",        "not a whole number"),
    ("measure -i --no-record -- no-such-command",         "",              "command not found"),
    # trace
    ("trace",                                             "",              "no command to trace"),
    ("trace -- /no/such/cmd",                             "",              "command not found"),
    ("trace -o {dir} -- true",                            "-o",            "already exists"),
    ("trace -o " + UNWRITABLE + "/t -- true",             "-o",            "cannot create files in /proc"),
    ("trace --label - -- true",                           "--label",       "at least one letter or digit"),
    ("trace --perf-data {missing}",                       "--perf-data",   "no such file"),
    ("trace --perf-data {dir}",                           "--perf-data",   "is a directory"),
    ("trace --perf-data {empty}",                         "--perf-data",   "is empty"),
    ("trace --perf-data {text} -- true",                  "--perf-data",   "not both"),
    ("trace --cwd {missing} -- true",                     "--cwd",         "no such directory"),
    ("trace --cwd {text} -- true",                        "--cwd",         "is not a directory"),
    # micro
    ("micro -k 0",                                        "-k",            "got '0'"),
    ("micro -k -1",                                       "-k",            "got '-1'"),
    ("micro -k 1000000",                                  "-k",            "from 1 to 10000"),
    ("micro -n 0",                                        "-n",            "got '0'"),
    ("micro -n -2",                                       "-n",            "got '-2'"),
    ("micro -n nan",                                      "-n",            "not a whole number"),
    ("micro --repeats 0",                                 "--repeats",     "argument --repeats"),
    ("micro --mode split --mode split",                   "--mode",        "--mode split is given twice"),
    ("micro --mode nope",                                 "--mode",        "invalid choice: 'nope'"),
    # mremap-probe
    ("mremap-probe --runs 0",                             "--runs",        "got '0'"),
    ("mremap-probe --runs x",                             "--runs",        "not a whole number"),
    # difftest
    ("difftest -n 0",                                     "-n",            "got '0'"),
    ("difftest --seed -1",                                "--seed",        "got '-1'"),
    ("difftest --events 0",                               "--events",      "got '0'"),
    ("difftest --procs 65",                               "--procs",       "from 1 to 64"),
    ("difftest --pages x",                                "--pages",       "not a whole number"),
    ("difftest --max-map 0",                              "--max-map",     "got '0'"),
    ("difftest --files 9",                                "--files",       "from 0 to 8"),
    ("difftest --case-dir {text}",                        "--case-dir",    "is not a directory"),
    ("difftest --record --out {text}",                    "--out",         "is not a directory"),
    ("difftest --trace {missing}",                        "--trace",       "no such file"),
    # forkcost
    ("forkcost --ks 0",                                   "--ks",          "at least two different VMA counts"),
    ("forkcost --ks 0,0",                                 "--ks",          "given twice"),
    ("forkcost --ks 0,x",                                 "--ks",          "not a whole number: 'x'"),
    ("forkcost --ks -1,4",                                "--ks",          "as --option=VALUE"),
    ("forkcost --ks=-1,4",                                "--ks",          "got '-1'"),
    ("forkcost --ks 0,,4",                                "--ks",          "empty element"),
    ("forkcost --forks 0",                                "--forks",       "got '0'"),
    ("forkcost --forks 1e99",                             "--forks",       "not a whole number"),
    ("forkcost --forks 99999999999",                      "--forks",       "from 1 to 1000000"),
    ("forkcost --repeats 1",                              "--repeats",     "from 2 to"),
    ("forkcost --seed -1",                                "--seed",        "from 0 to 4294967295"),
    ("forkcost --seed 4294967296",                        "--seed",        "from 0 to 4294967295"),
    ("forkcost --out {text}",                             "--out",         "is not a directory"),
    ("forkcost --out {dir} --no-record",                  "--out",         "contradict"),
    # kbuild (fails before installing, unpacking or building anything)
    ("kbuild --runs 0",                                   "--runs",        "got '0'"),
    ("kbuild --warmups -1",                               "--warmups",     "got '-1'"),
    ("kbuild --jobs 0",                                   "--jobs",        "got '0'"),
    ("kbuild --jobs 100000",                              "--jobs",        "from 1 to 1024"),
    ("kbuild --seed x",                                   "--seed",        "not a whole number"),
    ("kbuild --out " + UNWRITABLE,                        "--out",         "cannot create files in /proc"),
    ("kbuild --tree {text}",                              "--tree",        "is not a directory"),
    ("kbuild --shells zsh",                               "--shells",      "unknown value 'zsh'"),
    ("kbuild --shells sh,sh",                             "--shells",      "given twice"),
    ("kbuild --label ...",                                "--label",       "at least one letter or digit"),
    ("kbuild --config ''",                                "--config",      "at least one make target"),
    ("kbuild --config 'tinyconfig CC=clang'",             "--config",      "'CC=clang' is not a make target"),
    ("kbuild --trace --out " + UNWRITABLE,                "--out",         "cannot create files in /proc"),
    ("forkcost --children 0",                             "--children",    "got '0'"),
    ("forkcost --teardown-repeats 1",                     "--teardown-repeats", "from 2 to"),
    # ceiling (fails before installing, unpacking or recording anything)
    ("ceiling --shells zsh",                              "--shells",      "unknown value 'zsh'"),
    ("ceiling --shells dash2019,dash2019",                "--shells",      "given twice"),
    ("ceiling --passes plain,plain",                      "--passes",      "given twice"),
    ("ceiling --jobs 0",                                  "--jobs",        "got '0'"),
    ("ceiling --oversubscribed x",                        "--oversubscribed", "not a whole number"),
    ("ceiling --repeats 0",                               "--repeats",     "got '0'"),
    ("ceiling --freq 0",                                  "--freq",        "got '0'"),
    ("ceiling --seed -1",                                 "--seed",        "from 0 to 4294967295"),
    ("ceiling --validate 4,50",                           "--validate",    "three integers"),
    ("ceiling --tree {text}",                             "--tree",        "is not a directory"),
    ("ceiling --label ...",                               "--label",       "at least one letter or digit"),
    ("ceiling --out " + UNWRITABLE,                       "--out",         "cannot create files in /proc"),
    ("ceiling --out {dir} --no-record",                   "--out",         "contradict"),
    # sweep
    ("sweep",                                             "--out",         "the following arguments are required: --out"),
    ("sweep --out {text}",                                "--out",         "is not a directory"),
    ("sweep --out {dir} --seeds 3-1",                     "--seeds",       "range '3-1' is inverted"),
    ("sweep --out {dir} --seeds 1-x",                     "--seeds",       "not a whole number: '1-x'"),
    ("sweep --out {dir} --seeds 1,1",                     "--seeds",       "given twice"),
    ("sweep --out {dir} --seeds 0-99999",                 "--seeds",       "more than 10000 values"),
    ("sweep --out {dir} --units 0",                       "--units",       "must be > 0"),
    ("sweep --out {dir} --units nan",                     "--units",       "must be a finite number"),
    ("sweep --out {dir} --units inf",                     "--units",       "must be a finite number"),
    ("sweep --out {dir} --units 1,x",                     "--units",       "not a number: 'x'"),
    ("sweep --out {dir} --shell zsh",                     "--shell",       "unknown value 'zsh'"),
    ("sweep --out {dir} --make-forks maybe",              "--make-forks",  "expected yes or no"),
    ("sweep --out {dir} --shell-forks maybe",             "--shell-forks", "expected yes or no"),
    ("sweep --out {dir} --jobs 0",                        "--jobs",        "got '0'"),
    ("sweep --out {dir} --policy nope",                   "--policy",      "unknown policy 'nope'"),
    ("sweep --out {dir} --kind trace --trace {missing}",  "--trace",       "no such file"),
    ("sweep --out {dir} --kind trace",                    "--trace",       "--kind trace needs it"),
    ("sweep --out {dir} --trace {trace}",                 "--trace",       "goes with --kind trace"),
    ("sweep --out {dir} --policy v6.0,v6.0",              "--policy",      "given twice"),
    ("sweep --out {dir} --kind micro --workload nope",    "--workload",    "unknown value 'nope'"),
    ("sweep --out {dir} --kind micro -k -1",              "-k",            "got '-1'"),
    ("sweep --out {dir} --kind micro -n 0",               "-n",            "got '0'"),
    ("sweep --out {dir} --workers 0",                     "--workers",     "got '0'"),
    ("sweep --out {dir} --scheduler tcp://127.0.0.1:1",   "--scheduler",   "cannot reach 127.0.0.1:1"),
    ("sweep --out {dir} --scheduler 127.0.0.1:port",      "--scheduler",   "bad port"),
    ("sweep --out {dir} --scheduler http://127.0.0.1:1",  "--scheduler",   "unsupported scheme"),
    # reproduce
    ("reproduce -f {missing}",                            "-f",            "no such file"),
    ("reproduce -f {dir}",                                "-f",            "is a directory"),
    ("reproduce -f {badyaml}",                            "-f",            "badyaml.yaml:2: not valid YAML"),
    ("reproduce -f {text}",                               "-f",            "must map names to values"),
    ("reproduce --output-dir {text}",                     "--output-dir",  "exists and is not a directory"),
    ("reproduce --output-dir " + UNWRITABLE,              "--output-dir",  "cannot create files in /proc"),
    # kernel (UML policy kernels)
    ("kernel",                                            "",              "arguments are required: SUBCOMMAND"),
    ("kernel build --jobs 0",                             "--jobs",        "got '0'"),
    ("kernel build --jobs x",                             "--jobs",        "not a whole number"),
    ("kernel run --policy nope -- true",                  "--policy",      "unknown value 'nope'"),
    ("kernel run --policy v6.0,v6.0 -- true",             "--policy",      "is given twice"),
    ("kernel run --policy {text}:Mine -- true",           "--policy",      "the UML kernel only has the 5 built-in policies"),
    ("kernel micro --policy v6.0,mypatch.module:Mine",    "--policy",      "'mypatch.module:Mine' is a plug-in policy"),
    ("kernel run --policy v6.0",                          "",              "no command to run"),
    ("kernel run --policy v6.0 --rw {missing} -- true",   "--rw",          "no such directory"),
    ("kernel run --policy v6.0 --rw {text} -- true",      "--rw",          "is not a directory"),
    ("kernel run --policy v6.0 --cwd {missing} -- true",  "--cwd",         "no such directory"),
    ("kernel run --policy v6.0 --mem lots -- true",       "--mem",         "not a size"),
    ("kernel run --policy v6.0 --timeout 0 -- true",      "--timeout",     "must be > 0"),
    ("kernel run --policy v6.0 --timeout nan -- true",    "--timeout",     "finite"),
    ("kernel run --policy v6.0 -- nosuchcommand",         "",              "nosuchcommand: command not found"),
    ("kernel micro -k 0",                                 "-k",            "got '0'"),
    ("kernel micro -n x",                                 "-n",            "not a whole number"),
    ("kernel micro --policy all,v5.4",                    "--policy",      "unknown value 'all'"),
    ("kernel micro --mode nope",                          "--mode",        "invalid choice: 'nope'"),
    ("kernel micro --mode split --mode split",            "--mode",        "--mode split is given twice"),
    ("kernel micro --record --out " + UNWRITABLE,         "--out",         "cannot create files in /proc"),
    ("kernel micro --record --out {text}",                "--out",         "is not a directory"),
    ("kernel kbuild --jobs 0",                            "--jobs",        "got '0'"),
    ("kernel kbuild --policy v9",                         "--policy",      "unknown value 'v9'"),
    ("kernel kbuild --shell zsh",                         "--shell",       "unknown value 'zsh'"),
    ("kernel kbuild --mem 2",                             "--mem",         "not a size"),
    ("kernel kbuild --out " + UNWRITABLE,                 "--out",         "cannot create files in /proc"),
    ("kernel kbuild --tree {text}",                       "--tree",        "is not a directory"),
    # data
    ("data",                                              "",              "arguments are required: verify|add"),
    ("data add",                                          "PATH",          "arguments are required: PATH"),
    ("data add {missing}",                                "PATH",          "no such file or directory"),
    ("data add {text}",                                   "PATH",          "not under data/raw"),
]

# Numeric options whose checks belong to the statistics (issue #12) and are tested there.
EXEMPT = {("compare", "--alpha"), ("compare", "--margin"), ("compare", "--target"),
          ("compare", "--seed")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> dict[str, str]:
    """Paths for the placeholders; the sandbox is cwd, cache, repository root and TMPDIR."""
    for d in ("cwd", "cache", "tmp", "root/data/raw", "dir"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "root" / "data" / "raw" / "MANIFEST.sha256").write_text("")
    files = {
        "empty": ("empty.txt", ""),
        "text": ("text.txt", "hello\n"),
        "trace": ("trace.jsonl", '{"op":"spawn","pid":1}\n'
                                 '{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rw"}\n'
                                 '{"op":"touch","pid":1,"addr":4096,"write":true}\n'),
        "comments": ("comments.jsonl", "# nothing but a comment\n\n"),
        "badjson": ("badjson.jsonl", '{"op":"spawn","pid":1}\n{"op": \n'),
        "dead": ("dead.jsonl", '{"op":"spawn","pid":1}\n{"op":"exit","pid":1}\n'),
        "found": ("found.jsonl", FOUND.read_text()),
        "badyaml": ("badyaml.yaml", "a: [\n"),
    }
    paths = {"missing": str(tmp_path / "missing.txt"), "dir": str(tmp_path / "dir"),
             "seed": str(SEED)}
    for key, (name, text) in files.items():
        (tmp_path / name).write_text(text)
        paths[key] = str(tmp_path / name)
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"op":"spawn","pid":1}\n')[:-8])
    paths["badgz"] = str(tmp_path / "bad.jsonl.gz")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("RMAPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RMAPLAB_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    paths["_root"] = str(tmp_path)
    return paths


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """rmaplab in this process: exit status, stdout, stderr (an exception fails the test)."""
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("line, option, message", CASES,
                         ids=[c[0] or "(nothing)" for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(line, option, message, sandbox,
                                                         capsys):
    argv = [a.format(**sandbox) for a in shlex.split(line)]
    before = snapshot(Path(sandbox["_root"]))
    status, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("rmaplab") and ": error: " in lines[0], err
    assert message in lines[0]
    if option.startswith("-"):     # the option as typed, or the file given to it
        assert option in lines[0] or any(Path(a).name in lines[0] for a in argv if "/" in a)
    assert "Traceback" not in err and "warning" not in err.lower()
    assert snapshot(Path(sandbox["_root"])) == before, "the failed command left files behind"


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command path, its parser) for every subcommand, e.g. (("data", "add"), parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _commands(sub, prefix + (name,))


def _takes_path_or_number(action: argparse.Action) -> bool:
    t = action.type
    return t in (int, float, Path) or getattr(t, "__module__", "") == "rmaplab.cli._args"


def test_every_path_or_number_option_is_in_the_corpus():
    commands = dict(_commands(build_parser()))
    covered = set()
    for line, option, _ in CASES:
        words = tuple(shlex.split(line))
        path = max((words[:n] for n in range(len(words) + 1) if words[:n] in commands),
                   key=len, default=())
        covered.add((path, option))
    missing = []
    for path, sub in commands.items():
        for action in sub._actions:
            if not _takes_path_or_number(action):
                continue
            names = action.option_strings or [action.metavar or action.dest]
            if any((path[0], n) in EXEMPT for n in names):
                continue
            if not any((path, n) in covered for n in names):
                missing.append(f"rmaplab {' '.join(path)} {'/'.join(names)}")
    assert not missing, "no bad-input case for: " + ", ".join(missing)


# -- the live kernel: failing commands and outputs that break during the work ------------


def rmaplab(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmaplab", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **env})


@pytest.fixture
def live_env(tmp_path) -> dict[str, str]:
    (tmp_path / "cache").mkdir()
    return {"RMAPLAB_CACHE": str(tmp_path / "cache")}


@pytest.mark.perf
def test_failed_command_makes_measure_fail_with_its_own_status(live_kernel, tmp_path,
                                                               live_env):
    """`false` ends before perf stat reaches wait4 in about a third of the runs, and perf
    6.1 then reports status 0; each run here must be recorded with the status 1."""
    out = rmaplab("measure", "--runs", "5", "--out", str(tmp_path / "m"), "--", "false",
                  cwd=tmp_path, env=live_env)
    assert out.returncode == 1, out.stderr
    runs = pd.read_csv(next((tmp_path / "m").iterdir()) / "runs.csv")
    assert list(runs.exit_status) == [1] * 5 and runs.failed.all()
    killed = rmaplab("measure", "--no-record", "--json", "--", "sh", "-c", "kill -9 $$",
                     cwd=tmp_path, env=live_env)
    assert killed.returncode == 128 + 9, killed.stderr
    assert json.loads(killed.stdout)["runs"][0]["exit_status"] == -9


@pytest.mark.perf
def test_a_measurement_survives_an_output_path_that_breaks(live_kernel, tmp_path, live_env):
    """--out is checked before the run; the command itself then replaces the directory by
    a file, so writing fails after the measurement: it is kept in the cache instead."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = rmaplab("measure", "--out", str(out_dir), "--", "sh", "-c",
                  f"rmdir {out_dir} && touch {out_dir}", cwd=tmp_path, env=live_env)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("rmaplab measure: error: cannot write the results under")
    kept = Path(last.split("they were kept in ")[1].split(" (")[0])
    assert kept.parent == tmp_path / "cache" / "unsaved"
    runs = pd.read_csv(kept / "runs.csv")
    assert len(runs) == 1 and runs.exit_status[0] == 0 and runs.vma_alloc[0] > 0
    assert "Traceback" not in out.stderr


@pytest.mark.perf
def test_trace_of_a_failing_command_is_kept_and_exits_with_its_status(live_kernel, tmp_path,
                                                                      live_env):
    env = {**live_env, "LANG": "C", "LC_ALL": "C"}   # LC_ALL set: Python coerces nothing
    out = rmaplab("trace", "-o", str(tmp_path / "t"), "--", "sh", "-c", "exit 3",
                  cwd=tmp_path, env=env)
    assert out.returncode == 3, out.stderr
    meta = json.loads((tmp_path / "t" / "metadata.json").read_text())
    assert meta["record"]["exit_status"] == 3
    # the locale the command ran under is kept (it decides which locale files get mapped)
    assert meta["locale_env"]["LANG"] == "C" and meta["locale_env"]["LC_ALL"] == "C"
    assert not list((tmp_path / "cache").glob("trace-*")), "perf.data left in the cache"


@pytest.mark.perf
def test_interrupted_measure_keeps_its_finished_runs_and_nothing_else(live_kernel, tmp_path,
                                                                      live_env):
    """Ctrl-C during the second run: the first is recorded (marked incomplete), exit 130,
    no scratch files and no process left."""
    import signal

    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rmaplab", "measure", "--runs", "3", "--out", str(tmp_path / "m"),
         "--", "sleep", "2"], cwd=tmp_path, env={**os.environ, **live_env,
                                                  "TMPDIR": str(tmp_path / "tmp")},
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        # a shell's background job inherits SIGINT ignored, and Python then never installs
        # its handler: give the child the default disposition, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    # 2 s runs: after the first finishes, the signal has 4 s to land even on a loaded machine
    for line in proc.stderr:              # wait until the first run is done
        seen.append(line)
        if "run 1: " in line or "run 2: " in line or "run 3: " in line:
            break
    os.killpg(proc.pid, signal.SIGINT)    # what Ctrl-C sends: the whole process group
    rest = proc.stderr.read()
    assert proc.wait() == 130, "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == "rmaplab measure: interrupted"
    (kept,) = (tmp_path / "m").iterdir()
    assert kept.name.endswith("-incomplete")
    assert 1 <= len(pd.read_csv(kept / "runs.csv")) <= 2
    assert "stopped after" in json.loads((kept / "metadata.json").read_text())["incomplete"]
    assert list((tmp_path / "tmp").iterdir()) == []
    left = _session_left_after(proc.pid)
    assert left == "", f"processes of the interrupted measurement still run: {left}"


def _session_left_after(sid: int, seconds: float = 10) -> str:
    """The processes of session ``sid`` still there after up to ``seconds`` (`pgrep -a`
    lines; "" when none).  Killed processes may take a moment to go on a loaded machine
    (seen once, under two concurrent searches)."""
    deadline = time.monotonic() + seconds
    while True:
        ps = subprocess.run(["pgrep", "-a", "-s", str(sid)], capture_output=True, text=True)
        if ps.stdout == "" or time.monotonic() > deadline:
            return ps.stdout
        time.sleep(0.1)


def test_a_finding_is_written_even_when_standard_output_cannot_be(tmp_path):
    """stdout on a full disk: the trace and the summary are still written, and the error
    says it was standard output (it said only "[Errno 28] No space left on device", and
    the finding was lost; found by review)."""
    trace, summary = tmp_path / "x.jsonl", tmp_path / "s.json"
    with open("/dev/full", "w") as full:
        out = subprocess.run([sys.executable, "-m", "rmaplab", "search", "--unsteered",
                              "--budget", "7000", "--jobs", "1", "-o", str(trace), "--summary",
                              str(summary)], stdout=full, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr
    assert ("cannot write the outcome to standard output (No space left on device); it is in "
            f"{trace}, {summary}") in out.stderr
    assert traces.load(trace) and json.loads(summary.read_text())


def test_small_messages_found_by_review(tmp_path, capsys):
    """A gzipped trace not named .gz; a duplicate fork child ("fork: fork: ..." before);
    'all' beside a policy it contains, in either order."""
    from rmaplab.cli._args import policy_list

    gz = tmp_path / "t.jsonl"
    gz.write_bytes(gzip.compress(FOUND.read_bytes()))
    status, _, err = run_cli(["replay", str(gz)], capsys)
    assert status == 2 and "t.jsonl:1: gzip-compressed, but not named .gz" in err, err
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"op":"spawn","pid":1}\n{"op":"spawn","pid":2}\n'
                   '{"op":"fork","pid":1,"child":2}\n')
    status, _, err = run_cli(["replay", str(dup)], capsys)
    assert status == 2 and err.strip().endswith("dup.jsonl:3: fork: child 2 already exists"), err
    assert policy_list("all,v6.0")[:-1] == policy_list("v6.0,all")[1:]
    assert sorted(policy_list("all,v6.0")) == sorted(policy_list("all"))


def _recorded_trace(tmp_path, live=None, meta=None):
    """A directory as `rmaplab trace` writes it: trace, live_counts.json (the model's own
    counts unless ``live``), metadata.json."""
    from rmaplab import workloads
    from rmaplab.measure.capture import VALIDATED

    events = [ev for _, ev in workloads.numbered(workloads.split(4, 2))]
    trace = traces.write(events, tmp_path / "trace.jsonl")
    counters = traces.replay(list(enumerate(events, 1)), policy="v6.0", check="off").counters
    own = {k: counters[k] for k in VALIDATED}
    if isinstance(live, bytes):
        (tmp_path / "live_counts.json").write_bytes(live)
    else:
        (tmp_path / "live_counts.json").write_text(
            live if isinstance(live, str) else json.dumps(live if live is not None else own))
    (tmp_path / "metadata.json").write_text(
        meta if isinstance(meta, str) else json.dumps(meta if meta is not None
                                                      else {"preamble_events": 0}))
    return trace


@pytest.mark.parametrize("live, meta, message", [
    ("[1, 2]", None, "live_counts.json: expected a JSON object, found list"),
    (None, "[]", "metadata.json: expected a JSON object, found list"),
    (None, {"preamble_events": "2"}, "preamble_events is '2'"),
    (None, {"preamble_events": 2.5}, "preamble_events is 2.5"),
    (None, {"preamble_events": -3}, "preamble_events is -3"),
    (None, {"preamble_events": 10**6}, "preamble_events is 1000000"),
    ({"anon_vma_fork": True}, None, "live counts lack"),
    (b"\xff\xfe{}", None, "live_counts.json: not valid UTF-8"),
])
def test_replay_validate_refuses_damaged_companion_files(tmp_path, capsys, live, meta,
                                                         message):
    """Found by review: tracebacks (exit 1, read as a mismatch), or a negative preamble
    accepted and wrong numbers printed."""
    trace = _recorded_trace(tmp_path, live, meta)
    status, out, err = run_cli(["replay", str(trace), "--validate"], capsys)
    assert status == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_replay_validate_json_of_a_counter_only_the_model_counts_is_strict_json(tmp_path,
                                                                               capsys):
    """A live count of 0 against a model count above 0 differs by infinitely many percent:
    null in the JSON (which has no Infinity), and a mismatch (exit 1)."""
    from rmaplab.measure.capture import VALIDATED

    trace = _recorded_trace(tmp_path)
    live = json.loads((tmp_path / "live_counts.json").read_text())
    assert live["anon_vma_alloc"] > 0
    live["anon_vma_alloc"] = 0
    (tmp_path / "live_counts.json").write_text(json.dumps(live))
    status, out, err = run_cli(["replay", str(trace), "--validate", "--json"], capsys)
    assert status == 1, err
    result = json.loads(out)
    assert result["ok"] is False and result["max_abs_diff_pct"] is None
    assert {r["counter"] for r in result["counters"] if r["diff_pct"] is None} == {"anon_vma_alloc"}
    assert len(result["counters"]) == len(VALIDATED)


@pytest.mark.parametrize("delay, repeats", [(1.0, 1), (0.0, 6)])
def test_interrupted_replay_of_every_policy_stops_its_workers_at_once(tmp_path, delay, repeats):
    """Ctrl-C during `replay --policy all` on two workers: exit 130 within seconds, our
    message last, and no process left.  (Found by review: the pool finished every queued
    policy first -- a worker hit by Ctrl-C reported it and took the next -- 27 s here.
    Found by CI: a Ctrl-C as the workers start left the executor's manager thread closing
    its pipe while the interpreter exited, and a traceback "OSError: [Errno 9] Bad file
    descriptor" followed the message, 2 runs in 10 at no delay.)"""
    from rmaplab import workloads

    trace = tmp_path / "big.jsonl"
    # Enough work that seven full-check replays take minutes, not seconds.
    events = [ev for _, ev in workloads.numbered(workloads.split(3000, 3000))]
    traces.write(events, trace)
    for _ in range(repeats):
        _interrupt_replay_of_every_policy(tmp_path, trace, delay)


def _interrupt_replay_of_every_policy(tmp_path, trace, delay: float) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "rmaplab", "replay", str(trace), "--policy", "all",
         "--check", "full", "--jobs", "2"], cwd=tmp_path, stderr=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):                  # until both workers run
        ps = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True)
        if len(ps.stdout.split()) >= 3:
            break
        time.sleep(0.1)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)    # what Ctrl-C sends: the whole process group
    start = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert time.monotonic() - start < 15, err
    assert err.strip().splitlines()[-1] == "rmaplab replay: interrupted"
    assert "no-reuse" not in out          # no table of results that were never finished
    left = _session_left_after(proc.pid)
    assert left == "", f"replay workers still run: {left}"


def test_forkcost_prints_no_library_warning_on_a_tiny_run(tmp_path, live_env):
    """Eight forks: a fit this small is meaningless, and it says so in its own words."""
    out = rmaplab("forkcost", "--design", "state", "--ks", "0,1", "--forks", "1", "--repeats", "2",
                  "--no-record",
                  cwd=tmp_path, env=live_env)
    assert out.returncode == 0, out.stderr
    noise = [ln for ln in out.stderr.splitlines()
             if not ln.startswith(("  forkcost ", "rmaplab forkcost: warning: "))]
    assert noise == []


# -- outputs, without the live kernel ----------------------------------------------------


def test_two_results_with_the_same_name_get_two_directories(tmp_path):
    from rmaplab.measure import record

    def write(d: Path) -> None:
        (d / "runs.csv").write_text("x\n")

    first = record.save(tmp_path, "20260101T000000Z-true", write)
    second = record.save(tmp_path, "20260101T000000Z-true", write)
    assert first != second and second.name == "20260101T000000Z-true-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name]


def test_a_failed_write_leaves_no_directory_behind(tmp_path):
    from rmaplab.measure import record

    def write(d: Path) -> None:
        (d / "half.csv").write_text("x\n")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        record.save(tmp_path, "run", write)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_unpack_leaves_no_tree_and_an_incomplete_tree_is_replaced(tmp_path):
    import tarfile

    from rmaplab.errors import RmaplabError
    from rmaplab.measure import kbuild

    src = tmp_path / "src" / "linux-x"
    src.mkdir(parents=True)
    (src / "Makefile").write_text("all:\n")
    tarball = tmp_path / "linux-x.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(src, arcname="linux-x")
    cache = tmp_path / "cache"
    tree = cache / "linux-x"
    truncated = tmp_path / "truncated.tar.xz"
    truncated.write_bytes(tarball.read_bytes()[:60])
    with pytest.raises(RmaplabError, match="tar could not unpack"):
        kbuild.unpack(truncated, tree)
    assert list(cache.iterdir()) == []              # no tree, no temporary sibling
    tree.mkdir()
    (tree / "Makefile").write_text("half\n")        # what an interrupted tar used to leave
    kbuild.unpack(tarball, tree)
    assert (tree / "Makefile").read_text() == "all:\n" and (tree / kbuild.UNPACKED).exists()
    assert [p.name for p in cache.iterdir()] == ["linux-x"]


def test_search_leaves_only_its_finding_in_the_current_directory(tmp_path, monkeypatch, capsys):
    """No .hypothesis/ and no temporary file next to the output (nor next to /)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RMAPLAB_CACHE", str(tmp_path.parent / f"{tmp_path.name}-cache"))
    status, out, _ = run_cli(["search", "--policy", "v5.4", "--prefix", str(FOUND),
                              "--drop-last", "1", "--budget", "2000", "-o", "found.jsonl"],
                             capsys)
    assert status == 0 and "violation of same-anon_vma-same-chain" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["found.jsonl"]
    assert len(traces.load(tmp_path / "found.jsonl")) == len(traces.load(FOUND))


def test_atomic_write_refuses_to_replace_a_device(tmp_path):
    with pytest.raises(FileExistsError):
        atomic.write_bytes(Path("/dev/null"), b"x")


def test_replay_exit_status_says_whether_an_invariant_broke(capsys):
    assert run_cli(["replay", str(FOUND), "--policy", "v5.4"], capsys)[0] == 1
    assert run_cli(["replay", str(FOUND), "--policy", "v6.0"], capsys)[0] == 0
    assert run_cli(["replay", str(FOUND), "--policy", "all", "--json"], capsys)[0] == 1


def test_forkcost_says_when_its_fit_is_meaningless():
    from rmaplab.measure import cost

    rows = [{"k": k, "state": s, "ns_per_fork": 50_000 + 300 * k + (-40 if s else 0) * k + e}
            for k in (0, 32, 128) for s in (0, 1) for e in (-5, 0, 5)]
    per = cost.per_anon_vma_cost(pd.DataFrame(rows))
    assert per["ns_per_anon_vma"] == pytest.approx(-40)
    assert "meaningless" in cost.fit_warnings(per)[0]
    clear = [{**r, "ns_per_fork": r["ns_per_fork"] + (80 * r["k"] if r["state"] else 0)}
             for r in rows]
    assert cost.fit_warnings(cost.per_anon_vma_cost(pd.DataFrame(clear))) == []


def test_readme_synopsis_lists_every_option():
    """The README's command-line block names every option of every command."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```")[1]
    synopsis: dict[str, str] = {}
    command = None
    for line in block.splitlines():
        if line.startswith("rmaplab "):
            command = line.split()[1]
        if command is not None:
            synopsis[command] = synopsis.get(command, "") + " " + line
    missing = []
    for path, sub in dict(_commands(build_parser())).items():
        for action in sub._actions:
            names = [n for n in action.option_strings if n not in ("-h", "--help")]
            if names and not any(re.search(rf"[\[ |]{re.escape(n)}\b", synopsis.get(path[0], ""))
                                 for n in names):
                missing.append(f"rmaplab {' '.join(path)} {'/'.join(names)}")
    assert not missing, "README synopsis lacks: " + ", ".join(missing)


def test_analyses_read_the_newest_complete_measurement(tmp_path, monkeypatch):
    from rmaplab.measure import data

    monkeypatch.setenv("RMAPLAB_ROOT", str(tmp_path))
    for name in ("20260101T000000Z-forkcost", "20260102T000000Z-forkcost-incomplete",
                 "20260102T000000Z-forkcost-incomplete-2"):
        (tmp_path / "data" / "raw" / "cost" / name).mkdir(parents=True)
    assert data.latest("cost").name == "20260101T000000Z-forkcost"
