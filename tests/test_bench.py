"""`make bench` refuses bad arguments at once, before minutes of benchmarks."""

from __future__ import annotations

import pytest

from rmaplab import bench


@pytest.mark.parametrize("argv, message", [
    (["--trace", "/nonexistent/trace.jsonl.gz"], "no such trace file"),
    (["--forks", "0"], "at least 1"),
    (["--compare-runs", "1"], "at least 2"),
    (["--repeat", "0"], "at least 1"),
    (["--policy", "nope"], "not a built-in policy"),
])
def test_bad_arguments_are_one_error_and_status_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_replay_speed_reports_the_median_of_its_runs(tmp_path):
    # A small generated trace, two fresh processes: the median of two is their mean.
    from rmaplab import traces
    from rmaplab.difftest import generate

    path = traces.write(generate.generate(5, generate.Params(events=300)), tmp_path / "g.jsonl")
    r = bench.replay_speed(path, "v6.0", check="incremental", repeat=2)
    assert r["runs"] == 2 and len(r["replay_s_each"]) == 2
    assert r["replay_s"] == pytest.approx(sum(r["replay_s_each"]) / 2)
    assert r["events"] == len(traces.load(path))
    assert r["events_per_s"] == pytest.approx(r["events"] / r["replay_s"])
    assert r["events_per_s_best"] >= r["events_per_s"]
