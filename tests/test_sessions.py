"""Sessions of one claim: Wei Yang's v1 and v4 timings, against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from rmaplab import integrity, timings
from rmaplab.stats import compare, sessions

V1 = "seed/lkml-2019-10-05-wei-yang-v1-timings.txt"
V4 = "seed/lkml-2019-10-11-wei-yang-v4-2of2.txt"


def load(name: str) -> pd.DataFrame:
    return timings.to_frame(timings.load(integrity.raw_path(name)))


def test_v1_email_parses_its_bare_headings_into_two_groups_of_three():
    df = load(V1)
    assert list(dict.fromkeys(df["group"])) == ["Origin", "Patched"]
    patched_sys = df[(df.group == "Patched") & (df.metric == "sys")]["seconds"].tolist()
    # 1m41.791s, 1m43.474s, 1m42.102s as printed in the email
    assert patched_sys == pytest.approx([101.791, 103.474, 102.102])


def test_v4_reuses_the_v1_origin_runs_digit_for_digit():
    v1, v4 = load(V1), load(V4)
    assert sessions.same_runs(v1[v1.group == "Origin"], v4[v4.group == "Origin"])
    assert not sessions.same_runs(v1[v1.group == "Patched"], v4[v4.group == "Patched"])


def sessions_frame() -> pd.DataFrame:
    v1, v4 = load(V1), load(V4)
    return sessions.with_ratio(pd.concat([
        sessions.label(v4[v4.group == "Origin"], "Origin"),
        sessions.label(v1[v1.group == "Patched"], "Patched v1"),
        sessions.label(v4[v4.group == "Patched"], "Patched v4")], ignore_index=True))


def test_sys_user_ratio_is_per_run():
    runs = sessions_frame()
    ratio = runs[(runs.group == "Patched v1") & (runs.metric == sessions.RATIO)]
    expected = np.array([101.791, 103.474, 102.102]) / np.array([1045.705, 1067.451, 1058.230])
    assert ratio.sort_values("run")["seconds"].to_numpy() == pytest.approx(expected)


def test_spread_per_session():
    runs = sessions_frame()
    s = sessions.spread(runs, ["Origin", "Patched v1", "Patched v4"]).set_index(
        ["session", "metric"])
    user_v4 = np.array([1021.835, 1021.634, 1021.420])
    assert s.loc[("Patched v4", "user"), "sd"] == pytest.approx(user_v4.std(ddof=1))
    assert s.loc[("Patched v4", "user"), "cv_pct"] == pytest.approx(
        100 * user_v4.std(ddof=1) / user_v4.mean())


def test_sd_ratio_is_the_two_sided_f_test():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.1, 1.3])
    f = b.var(ddof=1) / a.var(ddof=1)
    res = sessions.sd_ratio(a, b)
    assert res.sd_ratio == pytest.approx(np.sqrt(f))
    # F(2, 2) has cdf f / (1 + f)
    assert res.p == pytest.approx(2 * min(f / (1 + f), 1 / (1 + f)))
    assert res.p == pytest.approx(2 * min(sst.f.cdf(f, 2, 2), sst.f.sf(f, 2, 2)))


def test_between_sessions_is_compare_per_pair():
    runs = sessions_frame()
    table = sessions.between(runs, [("Patched v1", "Patched v4")]).set_index("metric")
    ref = compare(runs[runs.group == "Patched v1"], runs[runs.group == "Patched v4"],
                  metrics=("real", "user", "sys"))
    for m in ref.metrics:
        assert table.loc[m.metric, "pct_change"] == pytest.approx(m.pct_change)
        assert table.loc[m.metric, "p_welch_holm"] == pytest.approx(m.p_welch_holm)
    ratio = table.loc[sessions.RATIO]
    a = runs[(runs.group == "Patched v1") & (runs.metric == sessions.RATIO)]["seconds"]
    b = runs[(runs.group == "Patched v4") & (runs.metric == sessions.RATIO)]["seconds"]
    assert ratio["pct_change"] == pytest.approx(100 * (b.mean() / a.mean() - 1))
    assert ratio["p_welch"] == pytest.approx(sst.ttest_ind(b, a, equal_var=False).pvalue)
