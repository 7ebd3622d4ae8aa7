"""One function per figure, one shared style, one way to save a figure.

A figure function takes tidy tables and returns ``(Figure, data)`` where ``data``
is exactly what was drawn; :func:`save_figure` writes PNG + SVG + the data as CSV
and records provenance (notebook, parameters, git commit) in the image metadata
and in figures/manifest.json.  nbval cannot compare images, so tests check the CSVs.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

from rmaplab import atomic  # noqa: E402
from rmaplab.paths import figures_dir  # noqa: E402
from rmaplab.provenance import git_commit  # noqa: E402

# Okabe-Ito via seaborn's colour-blind palette; readable in greyscale print too.
PALETTE = sns.color_palette("colorblind")
METRIC_LABELS = {"real": "real (wall)", "user": "user", "sys": "sys"}


def use_style() -> None:
    sns.set_theme(context="paper", style="ticks", palette=PALETTE, font_scale=1.1)
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 200,
        "savefig.bbox": "tight",
        "svg.hashsalt": "rmaplab",        # deterministic element ids in SVG output
        "svg.fonttype": "none",           # text stays text (searchable, small)
        "axes.spines.right": False,
        "axes.spines.top": False,
    })


def save_figure(fig: plt.Figure, name: str, data: pd.DataFrame, *, notebook: str,
                parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write figures/<name>.{png,svg,csv} and update figures/manifest.json."""
    out = figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    csv_bytes = data.to_csv(index=False, float_format="%.10g").encode()
    prov = {
        "figure": name,
        "notebook": notebook,
        "parameters": parameters or {},
        "commit": git_commit(),
        "data": f"{name}.csv",
        "data_sha256": hashlib.sha256(csv_bytes).hexdigest(),
    }
    atomic.write_bytes(out / f"{name}.csv", csv_bytes)
    for fmt, meta in (
        ("png", {"Software": None, "Description": json.dumps(prov, sort_keys=True)}),
        ("svg", {"Date": None, "Creator": None, "Description": json.dumps(prov, sort_keys=True)}),
    ):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta)
        atomic.write_bytes(out / f"{name}.{fmt}", buf.getvalue())
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = prov
    atomic.write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return prov


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of one group's runs."""
    values = np.asarray(values, float)
    mean = values.mean()
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def claim_runs(runs: pd.DataFrame, order: list[str]) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 1: every run per metric and group, with the mean and its 95 % t-interval.

    ``runs``: tidy timing records (group, run, metric, seconds); ``order``: the groups
    (sides or sessions), A first.  Panels have their own y-scale: user time is ~10x
    real time in a parallel build.
    """
    use_style()
    metrics = [m for m in ("real", "user", "sys") if m in set(runs["metric"])]
    width = 1.0 + 0.75 * len(order)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics) + 0.6, 3.0))
    axes = np.atleast_1d(axes)
    rows = []
    for ax, metric in zip(axes, metrics, strict=True):
        sub = runs[runs["metric"] == metric]
        for i, group in enumerate(order):
            vals = sub[sub["group"] == group].sort_values("run")["seconds"].to_numpy()
            mean, lo, hi = t_interval(vals)
            jitter = np.linspace(-0.08, 0.08, len(vals)) if len(vals) > 1 else np.zeros(1)
            ax.scatter(i + 0.18 + jitter, vals, s=18, color=PALETTE[i], zorder=3,
                       label=None, edgecolor="white", linewidth=0.5)
            ax.errorbar(i - 0.12, mean, yerr=[[mean - lo], [hi - mean]], fmt="o", ms=5,
                        color=PALETTE[i], capsize=3, lw=1.2)
            for run, v in zip(sub[sub["group"] == group].sort_values("run")["run"], vals,
                              strict=True):
                rows.append({"metric": metric, "group": group, "kind": "run", "run": int(run),
                             "seconds": v, "low": np.nan, "high": np.nan})
            rows.append({"metric": metric, "group": group, "kind": "mean_t95", "run": np.nan,
                         "seconds": mean, "low": lo, "high": hi})
        ax.set_xticks(range(len(order)), order)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_title(METRIC_LABELS[metric])
        ax.set_ylabel("seconds" if ax is axes[0] else "")
        ax.margins(y=0.25)
    fig.suptitle("Published timings: runs (dots) and mean with 95% t-interval", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


POLICY_ORDER = ["no-reuse", "v5.4", "v5.5", "wei-intended", "v6.0"]


def policy_allocations(table: pd.DataFrame, metrics: tuple[str, ...] = ("anon_vma_alloc",
                                                                         "avc_alloc")
                       ) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 2: allocations per workload under each policy (one panel per object type).

    ``table``: one row per (workload, policy) with the counter columns.
    """
    use_style()
    labels = {"anon_vma_alloc": "anon_vma allocations", "avc_alloc": "anon_vma_chain allocations",
              "peak_bytes_618": "peak bytes (6.18 sizes)"}
    data = table[["workload", "policy", *metrics]].copy()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), sharey=False)
    axes = np.atleast_1d(axes)
    workloads = list(dict.fromkeys(data["workload"]))
    policies = [p for p in POLICY_ORDER if p in set(data["policy"])]
    width = 0.8 / len(policies)
    for ax, metric in zip(axes, metrics, strict=True):
        for j, policy in enumerate(policies):
            sub = data[data["policy"] == policy].set_index("workload").reindex(workloads)
            ax.bar(np.arange(len(workloads)) + (j - (len(policies) - 1) / 2) * width,
                   sub[metric], width, label=policy, color=PALETTE[j])
        ax.set_xticks(range(len(workloads)), workloads, rotation=30, ha="right")
        ax.set_ylabel("count")
        ax.set_title(labels.get(metric, metric))
    handles, labels_ = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels_, title="policy", fontsize=8, title_fontsize=8, frameon=False,
               loc="upper center", ncol=len(policies), bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    return fig, data


def _place_leaves_first(name: str, children: dict, xpos: dict, cursor: list[float]) -> float:
    """x of a tree node: leaves left to right, parents centred over their children."""
    kids = children.get(name, [])
    if not kids:
        xpos[name] = cursor[0]
        cursor[0] += 1.0
    else:
        xs = [_place_leaves_first(k, children, xpos, cursor) for k in kids]
        xpos[name] = sum(xs) / len(xs)
    return xpos[name]


def anon_vma_hierarchy(panels: dict[str, pd.DataFrame]) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 3: the anon_vma tree of one fork scenario under each policy.

    ``panels``: policy -> nodes (anon_vma, parent, depth, vmas) from
    rmaplab.model.observe.hierarchy.  Nodes are laid out by depth; each is labelled
    with the VMAs (process:page) whose vma->anon_vma it is.
    """
    use_style()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.5 * len(panels), 3.6))
    axes = np.atleast_1d(axes)
    rows = []
    for ax, (policy, nodes) in zip(axes, panels.items(), strict=True):
        children: dict[str | None, list[str]] = {}
        for _, n in nodes.iterrows():
            parent = n["parent"] if isinstance(n["parent"], str) else None   # NaN: a root
            children.setdefault(parent, []).append(n["anon_vma"])
        xpos: dict[str, float] = {}
        cursor = [0.0]
        for root in children.get(None, []):
            _place_leaves_first(root, children, xpos, cursor)
        by_name = nodes.set_index("anon_vma")
        for name, x in xpos.items():
            n = by_name.loc[name]
            y = -float(n["depth"])
            parent = n["parent"]
            if isinstance(parent, str):
                ax.plot([xpos[parent], x], [y + 1, y], color="0.6", lw=1, zorder=1)
            used = isinstance(n["vmas"], str) and bool(n["vmas"])
            ax.scatter([x], [y], s=260, color=PALETTE[0] if used else "white",
                       edgecolor=PALETTE[0], zorder=2)
            ax.text(x, y, name.replace("AV", ""), ha="center", va="center", fontsize=7,
                    color="white" if used else PALETTE[0], zorder=3)
            if used:
                ax.text(x, y - 0.28, n["vmas"].replace(" ", "\n"), ha="center", va="top",
                        fontsize=6, color="0.25")
            rows.append({"policy": policy, "anon_vma": name,
                         "parent": parent if isinstance(parent, str) else "",
                         "depth": n["depth"], "x": x, "vmas": n["vmas"] if used else ""})
        ax.set_title(policy, fontsize=9)
        ax.set_xlim(-0.7, max(cursor[0] - 0.3, 0.7))
        ax.set_ylim(-nodes["depth"].max() - 1.3, 0.6)
        ax.axis("off")
    fig.suptitle("anon_vma hierarchy after the scenario (filled: some VMA's anon_vma; "
                 "labels: P<pid>:<page>)", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def aa_changes(splits: pd.DataFrame, marks: dict[str, float]) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 4: apparent % change between 3-run halves of identical builds (A/A).

    ``splits``: one row per (shell, metric, split) with ``pct_change``; ``marks``: the
    seed's published change per metric, drawn as a vertical line.
    """
    use_style()
    metrics = [m for m in ("real", "user", "sys") if m in set(splits["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.0))
    axes = np.atleast_1d(axes)
    shells = list(dict.fromkeys(splits["shell"]))
    for ax, metric in zip(axes, metrics, strict=True):
        sub = splits[splits["metric"] == metric]
        lim = max(sub["pct_change"].abs().max(), abs(marks.get(metric, 0))) * 1.1
        bins = np.linspace(-lim, lim, 41)
        for i, shell in enumerate(shells):
            ax.hist(sub[sub["shell"] == shell]["pct_change"], bins=bins, alpha=0.6,
                    color=PALETTE[i], label=f"{shell} (A/A)")
        if metric in marks:
            for sign in (-1, 1):
                ax.axvline(sign * abs(marks[metric]), color="black", lw=1, ls="--")
            ax.text(abs(marks[metric]), ax.get_ylim()[1] * 0.95, " seed", fontsize=7, va="top")
        ax.set_title(METRIC_LABELS[metric])
        ax.set_xlabel("apparent change (%)")
    axes[0].set_ylabel("splits")
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle("A/A: every split of identical builds into two groups of 3, against the "
                 "seed's change (dashed)", fontsize=9)
    fig.tight_layout()
    return fig, splits[["shell", "metric", "pct_change", "p_welch", "p_mannwhitney",
                        "p_permutation"]].reset_index(drop=True)


def fork_cost(runs: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 5: time per fork+exit+wait against VMAs, with and without anon_vmas."""
    use_style()
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    labels = {0: "VMAs without anon_vma", 1: "VMAs with an anon_vma (no pages)",
              2: "VMAs with an anon_vma and a page"}
    rows = []
    for i, (state, sub) in enumerate(runs.groupby("state")):
        us = sub["ns_per_fork"] / 1000
        ax.scatter(sub["k"] + (i - 0.5) * 2, us, s=8, alpha=0.5, color=PALETTE[i])
        med = sub.groupby("k")["ns_per_fork"].median() / 1000
        ax.plot(med.index, med.values, color=PALETTE[i], label=labels.get(state, state))
        for k, v in med.items():
            rows.append({"state": state, "k": k, "median_us_per_fork": v})
    ax.set_xlabel("one-page VMAs in the forking process")
    ax.set_ylabel("µs per fork + exit + wait")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def build_label(shell: str, shell_forks: bool, make_forks: bool, units: float) -> str:
    """How a generated build is named in figures: recipe shell, make, size."""
    who = {"sh": "dash forks" if shell_forks else "dash vforks"}.get(shell, shell)
    return f"{who}, make {'forks' if make_forks else 'spawns'}, x{units:g}"


def sweep_savings(savings: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 6: share of all anon_vma allocations each patch saves, by kind of build."""
    use_style()
    d = savings.copy()
    if "shell_forks" not in d:
        d["shell_forks"] = False
    d["build"] = [build_label(r.shell, r.shell_forks, r.make_forks, r.units)
                  for r in d.itertuples()]
    builds = list(dict.fromkeys(
        d.sort_values(["units", "shell", "shell_forks", "make_forks"])["build"]))
    fig, ax = plt.subplots(figsize=(6.2, 3.2))
    width = 0.38
    for j, patch in enumerate(("v5.5", "wei-intended")):
        sub = d[d["patch"] == patch].set_index("build").reindex(builds)
        ax.bar(np.arange(len(builds)) + (j - 0.5) * width, sub["all_pct"], width,
               yerr=sub["all_pct_sd"], capsize=2, color=PALETTE[2 + j], label=patch)
    ax.set_xticks(range(len(builds)), builds, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("% of anon_vma allocations saved\n(vs v5.4; mean, SD over seeds)")
    ax.legend(frameon=False, fontsize=8, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig, d[["patch", "build", "shell", "shell_forks", "make_forks", "units", "mm_forks",
                   "saved", "fork_pct", "all_pct", "all_pct_sd", "walk"]]


def ceiling_components(table: pd.DataFrame, claim_pct: float) -> tuple[plt.Figure, pd.DataFrame]:
    """The in-vivo ceiling: each path's share of the build's uninstrumented sys time.

    ``table``: rows of rmaplab.measure.ceiling.ceiling_table (one shell or several),
    with ``pct_of_sys`` and its t-interval; ``claim_pct``: the seed's claimed sys change,
    drawn as a dashed line.
    """
    use_style()
    d = table.copy()
    d["label"] = d["source"].str.replace(" (on-CPU)", "", regex=False) + ": " + d["component"]
    labels = list(dict.fromkeys(d["label"]))
    shells = list(dict.fromkeys(d["shell"]))
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(labels) * len(shells) + 1.2))
    height = 0.8 / len(shells)
    for j, shell in enumerate(shells):
        sub = d[d["shell"] == shell].set_index("label").reindex(labels)
        y = np.arange(len(labels)) + (j - (len(shells) - 1) / 2) * height
        err = np.vstack([sub["pct_of_sys"] - sub["pct_ci_low"],
                         sub["pct_ci_high"] - sub["pct_of_sys"]])
        ax.barh(y, sub["pct_of_sys"], height, xerr=np.nan_to_num(err), capsize=2,
                color=PALETTE[j], label=shell)
    ax.axvline(abs(claim_pct), color="black", ls="--", lw=1)
    ax.text(abs(claim_pct), -0.9, f" claimed change {abs(claim_pct):.1f}%", fontsize=7,
            va="bottom")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of the build's sys time (uninstrumented runs)")
    ax.legend(title="recipe shell", fontsize=7, title_fontsize=7, frameon=False)
    fig.tight_layout()
    return fig, d[["shell", "jobs", "source", "component", "n_runs", "seconds", "ci_low_s",
                   "ci_high_s", "pct_of_sys", "pct_ci_low", "pct_ci_high",
                   "denominator_sys_s"]].reset_index(drop=True)


def sampling_validation(table: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """Sampled attribution against work of known size (rmaplab.measure.ceiling's
    validation_table): extra CPU (rusage), extra time sampled, extra time sampled under
    the anon_vma functions, per contrast, with standard errors."""
    use_style()
    parts = [("extra_cpu_s", "CPU time (rusage)"), ("extra_sampled_s", "sampled, all"),
             ("extra_anon_s", "sampled under anon_vma functions"),
             ("extra_anon_irq_site_s", "... at an irq re-enable site")]
    fig, ax = plt.subplots(figsize=(6.2, 3.0))
    width = 0.8 / len(parts)
    rows = []
    names = [c.split(" - ")[0].replace("validate-", "") + " vs "
             + c.split(" - ")[1].replace("validate-", "") for c in table["contrast"]]
    for j, (col, label) in enumerate(parts):
        x = np.arange(len(table)) + (j - (len(parts) - 1) / 2) * width
        ax.bar(x, table[col], width, yerr=table[col + "_se"], capsize=2, color=PALETTE[j],
               label=label)
        for name, v, se in zip(names, table[col], table[col + "_se"], strict=True):
            rows.append({"contrast": name, "quantity": label, "seconds": v, "se": se})
    ax.set_xticks(range(len(table)), [f"{n}\n({w.split(':')[0]})" for n, w in
                                       zip(names, table["extra_work"], strict=True)], fontsize=7)
    ax.set_ylabel("extra seconds (mean of runs)")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def object_costs(coef: pd.DataFrame, teardown: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """Prices per object (OLS with 95% CIs) and the teardown ratio concurrent/sequential."""
    use_style()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(7.2, 2.8), width_ratios=[2, 1])
    y = np.arange(len(coef))
    ax.errorbar(coef["ns"], y, xerr=[coef["ns"] - coef["ci_low"], coef["ci_high"] - coef["ns"]],
                fmt="o", color=PALETTE[0], capsize=3)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_yticks(y, coef["term"])
    ax.invert_yaxis()
    ax.set_xlabel("ns of CPU per fork + exit (95% CI)")
    yb = np.arange(len(teardown))
    bx.errorbar(teardown["ratio"], yb, xerr=[teardown["ratio"] - teardown["ratio_ci_low"],
                                             teardown["ratio_ci_high"] - teardown["ratio"]],
                fmt="s", color=PALETTE[1], capsize=3)
    bx.axvline(1, color="0.6", lw=0.8)
    bx.set_yticks(yb, teardown["layout"])
    bx.invert_yaxis()
    bx.set_xlabel("teardown per anon_vma:\ntogether / one at a time")
    fig.tight_layout()
    data = pd.concat([coef.assign(panel="price"),
                      teardown.rename(columns={"layout": "term", "ratio": "ns",
                                               "ratio_ci_low": "ci_low",
                                               "ratio_ci_high": "ci_high"})
                      [["term", "ns", "ci_low", "ci_high"]].assign(panel="teardown ratio")])
    return fig, data.reset_index(drop=True)


def break_even(table: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """How many times more each saved object would have to cost to explain the claim."""
    use_style()
    d = table.copy()
    d["case"] = d["patch"] + " (" + d["shell"] + ")"
    fig, ax = plt.subplots(figsize=(5.0, 0.45 * len(d) + 1.0))
    y = np.arange(len(d))
    ax.errorbar(d["break_even_factor"], y,
                xerr=[d["break_even_factor"] - d["break_even_factor_low"],
                      d["break_even_factor_high"] - d["break_even_factor"]],
                fmt="o", color=PALETTE[3], capsize=3)
    ax.axvline(1, color="black", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(y, d["case"])
    ax.invert_yaxis()
    ax.set_xlabel("claimed sys saving / measured worth of the saved objects")
    fig.tight_layout()
    return fig, d[["shell", "patch", "saved_anon_vmas", "saved_avcs", "sys_s", "claimed_s",
                   "measured_s", "measured_ci_low_s", "measured_ci_high_s", "break_even_factor",
                   "break_even_factor_low", "break_even_factor_high", "ns_per_anon_vma_needed",
                   "ns_per_avc_needed"]]
def walk_lengths(recorded: pd.DataFrame, by_jobs: pd.DataFrame
                 ) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 7: rmap-walk lengths of the pages forked children COW, per policy and -j.

    ``recorded``: walk-length histograms (shell, policy, moment, side, avcs, vmas) of the
    recorded builds; ``by_jobs``: the same for generated builds with a ``jobs`` column.
    One panel per shell: the share of forked VMAs whose COWed pages cost at least x AVCs
    per walk, right after the fork (x >= 2: every walk visits at least one; log scale,
    "0" where no VMA does); last panel: the mean against -j.
    """
    use_style()
    shells = list(dict.fromkeys(recorded["shell"]))
    fig, axes = plt.subplots(1, len(shells) + 1, figsize=(3.6 * (len(shells) + 1), 3.3))
    rows = []
    child = recorded[(recorded["moment"] == "fork") & (recorded["side"] == "child")]
    policies = [p for p in POLICY_ORDER if p in set(child["policy"])]
    top = int(np.ceil(child["avcs"].max()))
    xs = list(range(2, max(top, 2) + 1))
    width = 0.8 / len(policies)
    floor = 1e-5
    for ax, shell in zip(axes, shells, strict=False):
        for j, policy in enumerate(policies):
            h = child[(child["shell"] == shell) & (child["policy"] == policy)]
            total = h["vmas"].sum()
            shares = [h[h["avcs"] >= x]["vmas"].sum() / total for x in xs]
            pos = np.arange(len(xs)) + (j - (len(policies) - 1) / 2) * width
            ax.bar(pos, [max(v, floor) if v else 0 for v in shares], width, color=PALETTE[j],
                   label=policy)
            for x0, v in zip(pos, shares, strict=True):
                if not v:
                    ax.text(x0, floor * 1.3, "0", ha="center", va="bottom", fontsize=6,
                            color=PALETTE[j])
            rows += [{"panel": shell, "shell": shell, "policy": policy, "x": x,
                      "share_at_least": v} for x, v in zip(xs, shares, strict=True)]
        ax.set_yscale("log")
        ax.set_ylim(floor, 1)
        ax.set_xticks(range(len(xs)), [f"≥ {x}" for x in xs])
        ax.set_xlabel("AVCs visited per rmap walk")
        ax.set_title(f"{shell}: pages COWed by forked children", fontsize=9)
    axes[0].set_ylabel("share of forked VMAs")
    axes[0].legend(fontsize=7, frameon=False, title="policy", title_fontsize=7)
    ax = axes[-1]
    jc = by_jobs[(by_jobs["moment"] == "fork") & (by_jobs["side"] == "child")].copy()
    jc["weighted"] = jc["avcs"] * jc["vmas"]
    means = jc.groupby(["shell", "policy", "jobs"])[["weighted", "vmas"]].sum()
    means = (means["weighted"] / means["vmas"]).rename("mean").reset_index()
    markers = ["o", "s", "^", "v", "D"]
    for j, policy in enumerate(policies):
        for k, shell in enumerate(shells):
            m = means[(means["policy"] == policy) & (means["shell"] == shell)]
            if m.empty:
                continue
            ax.plot(m["jobs"], m["mean"], marker=markers[j % len(markers)], ms=4,
                    mfc="none" if k else PALETTE[j], color=PALETTE[j], ls=["-", "--"][k % 2],
                    label=f"{policy} ({shell})")
            rows += [{"panel": "jobs", "shell": shell, "policy": policy, "x": r.jobs,
                      "mean": r.mean} for r in m.itertuples()]
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(means["jobs"].unique()), [str(j) for j in sorted(means["jobs"].unique())])
    ax.set_xlabel("make -j (generated builds)")
    ax.set_ylabel("mean AVCs per walk")
    ax.set_title("against -j", fontsize=9)
    ax.legend(fontsize=6, frameon=False, ncol=2)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)
