"""Every loader against real output of its tool (tests/data/timings/README.md) and edge cases."""

from __future__ import annotations

import json

import pytest

from rmaplab import timings
from rmaplab.errors import RmaplabError


def frame(path, **kw):
    return timings.to_frame(timings.load(path, **kw))


def test_seed_email_parses_into_two_groups_of_three_runs(seed_file):
    df = frame(seed_file)
    assert list(dict.fromkeys(df["group"])) == ["Origin", "Patched"]
    assert df.groupby(["group", "metric"]).size().eq(3).all()
    origin_sys = df[(df.group == "Origin") & (df.metric == "sys")].sort_values("run")
    # 1m51.953s, 1m50.553s, 1m53.600s as printed in the email
    assert origin_sys["seconds"].tolist() == pytest.approx([111.953, 110.553, 113.600])
    patched_user = df[(df.group == "Patched") & (df.metric == "user")]
    assert patched_user["seconds"].tolist() == pytest.approx([1021.835, 1021.634, 1021.420])


def test_seed_prose_lines_about_sys_and_user_are_not_read_as_timings(seed_file):
    # The email says "it shows run time in sys reduced 11.6%": prose, not a run.
    df = frame(seed_file)
    assert len(df) == 18


def test_bash_default_with_labelled_groups(timing_file):
    df = frame(timing_file("bash_default_groups.txt"))
    assert df["format"].unique().tolist() == ["bash-time"]
    assert df.groupby("group")["run"].max().to_dict() == {"A": 3, "B": 3}
    real_a = df[(df.group == "A") & (df.metric == "real")]["seconds"]
    assert real_a.between(0.05, 0.06).all()


def test_bash_posix_format_and_gnu_time_p_read_alike(timing_file):
    for name in ("bash_posix.txt", "gnu_posix.txt"):
        df = frame(timing_file(name))
        assert set(df["metric"]) == {"real", "user", "sys"}
        assert df[df.metric == "real"]["seconds"].between(0.01, 0.03).all()


def test_bash_decimal_comma(timing_file):
    df = frame(timing_file("bash_decimal_comma.txt"))
    assert len(df) == 9
    assert df[df.metric == "real"]["seconds"].between(0.019, 0.03).all()


def test_bash_minutes_past_sixty(timing_file):
    df = frame(timing_file("edge/bash_over_an_hour.txt"))
    real = df[df.metric == "real"].sort_values("run")["seconds"].tolist()
    assert real == pytest.approx([75 * 60 + 3.123, 74 * 60 + 59.9])
    assert df[df.metric == "user"]["seconds"].iloc[0] == pytest.approx(140 * 60 + 0.5)


def test_gnu_default_keeps_exit_status_and_rss(timing_file):
    df = frame(timing_file("gnu_default.txt"))
    runs = df[df.metric == "real"].sort_values("run")
    assert runs["exit_status"].tolist() == [0, 0, 3]
    assert runs["maxrss_kb"].tolist() == [1748, 1688, 1392]
    assert runs["seconds"].tolist() == pytest.approx([0.05, 0.05, 0.0])


def test_gnu_elapsed_hours_format(timing_file):
    df = frame(timing_file("edge/gnu_hour_elapsed.txt"))
    real = df[df.metric == "real"].sort_values("run")["seconds"].tolist()
    assert real == pytest.approx([0.05, 3600 + 2 * 60 + 3])


def test_gnu_verbose(timing_file):
    df = frame(timing_file("gnu_verbose.txt"))
    real = df[df.metric == "real"].sort_values("run")
    assert real["seconds"].tolist() == pytest.approx([0.05, 0.06], abs=0.011)
    assert real["command"].tolist() == ["sleep 0.05", "sleep 0.06"]
    assert (real["exit_status"] == 0).all()
    assert (real["maxrss_kb"] > 0).all()


def test_gnu_custom_format_needs_the_format(timing_file):
    path = timing_file("gnu_format_e_U_S.txt")
    df = frame(path, time_format="%e %U %S")
    assert df.groupby("metric").size().to_dict() == {"real": 3, "sys": 3, "user": 3}
    assert df[df.metric == "real"]["seconds"].tolist() == pytest.approx([0.03] * 3)
    with pytest.raises(RmaplabError, match="no timing output recognised"):
        timings.load(path)


def test_gnu_custom_format_rejects_unknown_specifier():
    with pytest.raises(RmaplabError, match="%Z is not supported"):
        timings.gnu_time.format_regex("%e %Z")


def test_gnu_custom_format_reports_the_line_that_does_not_match(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("0.03 0.00 0.00\n0.03 zero 0.00\n")
    with pytest.raises(RmaplabError, match=r"t.txt:2: line does not match"):
        timings.load(p, time_format="%e %U %S")


def test_perf_stat_single_runs(timing_file):
    df = frame(timing_file("perf_stat_single.txt"))
    assert df.groupby("metric").size().to_dict() == {"real": 3, "sys": 3, "user": 3}
    assert (df["kind"] == "run").all()
    assert df[df.metric == "real"]["seconds"].between(0.03, 0.04).all()


def test_perf_stat_repeat_is_a_mean_not_runs(timing_file):
    df = frame(timing_file("perf_stat_r3.txt"))
    assert len(df) == 1
    row = df.iloc[0]
    assert row["kind"] == "mean" and row["n"] == 3
    assert row["seconds"] == pytest.approx(0.0307371)
    assert row["sem"] == pytest.approx(0.0000478)


def test_perf_stat_table_gives_runs(timing_file):
    df = frame(timing_file("perf_stat_r3_table.txt"))
    assert (df["kind"] == "run").all() and len(df) == 3
    assert df["run"].tolist() == [1, 2, 3]


def test_perf_stat_csv_tool_events(timing_file):
    df = frame(timing_file("perf_stat_csv.txt"))
    assert df.groupby("metric").size().to_dict() == {"real": 3, "sys": 3, "user": 3}
    first = df[df.run == 1].set_index("metric")["seconds"]
    assert first["real"] == pytest.approx(0.030515446)
    assert first["user"] == pytest.approx(0.000475)
    # perf 6.1 prints <not counted> for a zero tool-event count: 0 s, flagged.
    assert first["sys"] == 0.0
    assert bool(df[(df.run == 1) & (df.metric == "sys")]["not_counted"].iloc[0])


def test_perf_stat_csv_other_separator(timing_file):
    df = frame(timing_file("perf_stat_csv_semicolon.txt"))
    assert df.groupby("metric").size().to_dict() == {"real": 2, "sys": 2, "user": 2}


@pytest.mark.parametrize("value", ["nan", "inf", "abc", "3e7", ""])
@pytest.mark.parametrize("name", ["perf_stat_csv.txt", "perf_stat_csv_semicolon.txt"])
def test_perf_stat_csv_line_without_a_count_is_an_error_not_skipped(timing_file, tmp_path,
                                                                   name, value):
    """Skipping it shifted every later run by one metric (run 2's real became run 3's;
    found by review)."""
    lines = timing_file(name).read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if "duration_time" in line
             and i > 0 and line[0].isdigit())
    sep = ";" if "semicolon" in name else ","
    lines[n] = value + lines[n][lines[n].index(sep):]
    bad = tmp_path / name
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(RmaplabError, match=rf"{name}:{n + 1}: perf stat CSV line for "
                                           "duration_time has no count"):
        timings.load(bad)


@pytest.mark.parametrize("times, message", [
    ("[1" + "0" * 400 + ", 2.0, 3.0]", "holds a number too large to be a time"),
    ("[1e150, 2e150, 3e150]", r"real time 1e\+150 s is outside 1e-12 s to 1e\+07 s"),
    ("[1e-150, 2e-150, 3e-150]", "real time 1e-150 s is outside"),
])
def test_times_no_clock_measures_are_refused(tmp_path, times, message):
    """They reached the statistics and ended in OverflowError or ZeroDivisionError (found
    by review)."""
    f = tmp_path / "h.json"
    f.write_text('{"results": [{"command": "a", "mean": 1, "times": ' + times + '}]}')
    with pytest.raises(RmaplabError, match=message):
        timings.load(f)


def test_gnu_time_negative_exit_status_is_kept(tmp_path):
    """GNU time prints "non-zero status -3" for some failures; the line was not matched and
    the run counted as a success (found by review)."""
    f = tmp_path / "g.txt"
    f.write_text("Command exited with non-zero status -3\n"
                 "0.01user 0.00system 0:00.02elapsed 0%CPU\n")
    df = frame(f)
    assert set(df["exit_status"]) == {-3}


def test_perf_stat_csv_repeat_is_means(timing_file):
    df = frame(timing_file("perf_stat_csv_r3.txt"))
    assert (df["kind"] == "mean").all()


def test_perf_stat_json(timing_file):
    df = frame(timing_file("perf_stat_json.txt"))
    assert df.groupby("metric").size().to_dict() == {"real": 2, "sys": 2, "user": 2}


def test_hyperfine_runs_per_command_and_user_sys_means(timing_file):
    path = timing_file("hyperfine.json")
    raw = json.loads(path.read_text())
    df = frame(path)
    runs = df[df.kind == "run"]
    assert runs.groupby("group").size().to_dict() == {"sleep 0.02": 5, "sleep 0.03": 5}
    assert runs[runs.group == "sleep 0.02"]["seconds"].tolist() == pytest.approx(
        raw["results"][0]["times"])
    means = df[df.kind == "mean"]
    assert set(means["metric"]) == {"user", "sys"} and (means["n"] == 5).all()


def test_hyperfine_records_the_line_order_and_exit_code_of_each_run(timing_file):
    df = frame(timing_file("edge/hyperfine_failed_run.json"))
    runs = df[df.kind == "run"]
    # hyperfine runs the commands in turn: the order runs on across results
    assert runs["order"].tolist() == list(range(1, 11))
    assert runs["line"].iloc[0] == 13
    assert runs["exit_status"].tolist() == [0] * 8 + [1, 0]


def test_text_formats_take_the_line_as_run_order(seed_file):
    df = frame(seed_file)
    assert (df["order"] == df["line"]).all()


def test_pyperf_plain_and_gzipped_agree(timing_file):
    plain = frame(timing_file("pyperf_command.json"))
    gz = frame(timing_file("pyperf_command.json.gz"))
    assert plain["seconds"].tolist() == gz["seconds"].tolist()
    assert len(plain) == 6 and plain["process"].tolist() == [1, 1, 2, 2, 3, 3]
    assert plain["seconds"].between(0.009, 0.05).all()


@pytest.mark.parametrize("name, message", [
    ("edge/truncated_bash.txt", r"truncated_bash.txt:17: incomplete `time` block: user, sys"),
    ("edge/truncated_block.txt", r"truncated_block.txt:5: incomplete `time` block: sys"),
    ("edge/truncated_hyperfine.json", r"JSON, but neither hyperfine, pyperf nor rmaplab measure"),
    ("edge/garbage.txt", r"garbage.txt: no timing output recognised"),
    ("edge/empty.txt", r"empty.txt: empty file"),
    ("edge/mixed_formats.txt", r"mixed formats in one file \(bash-time at line 1, gnu-time at line 10\)"),
    ("edge/bad_value.txt", r"bad_value.txt:1: cannot read time value '0m0.0x0s'"),
    ("edge/pyperf_wrong_unit.json", r"unit 'byte', not seconds"),
    ("edge/gnu_malformed.txt", r"gnu_malformed.txt:2: malformed GNU time line"),
    ("edge/perf_csv_bad_unit.txt", r"perf_csv_bad_unit.txt:1: duration_time has unit 'furlong'"),
    ("edge/hyperfine_nan.json", r"hyperfine_nan.json:15: real time nan s is not a finite"),
    ("edge/hyperfine_negative.json", r"hyperfine_negative.json:15: real time -0.0205\d* s is not"),
    ("edge/hyperfine_bool.json", r"hyperfine_bool.json:15: results\[0\].times\[2\] is true, not a"),
    ("edge/pyperf_bool.json", r"pyperf_bool.json:1: benchmarks\[0\].runs\[0\].values\[0\] is false"),
    ("edge/perf_csv_negative.txt", r"perf_csv_negative.txt:1: real time -0.0305\d* s is not"),
])
def test_bad_input_fails_naming_file_and_line(timing_file, name, message):
    with pytest.raises(RmaplabError, match=message):
        timings.load(timing_file(name))


def test_forced_format_that_does_not_fit_fails_cleanly(timing_file):
    with pytest.raises(RmaplabError, match="no GNU time report found"):
        timings.load(timing_file("bash_posix.txt"), format="gnu-time")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(RmaplabError, match="no such file"):
        timings.load(tmp_path / "nope.txt")
    with pytest.raises(RmaplabError, match="is a directory"):
        timings.load(tmp_path)
