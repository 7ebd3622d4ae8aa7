"""`make bench` refuses bad arguments at once, before minutes of benchmarks."""

from __future__ import annotations

import pytest

from rmaplab import bench


@pytest.mark.parametrize("argv, message", [
    (["--trace", "/nonexistent/trace.jsonl.gz"], "no such trace file"),
    (["--forks", "0"], "at least 1"),
    (["--compare-runs", "1"], "at least 2"),
    (["--policy", "nope"], "not a built-in policy"),
])
def test_bad_arguments_are_one_error_and_status_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
