"""Notebook 04's analysis: the recorded builds replayed under every policy and merge rule,
the 2019 claim set against the variant that was measured, policy-kernel counts beside the
model's when they exist, and rmap-walk lengths.

The claim ("20% fewer anon_vma allocations") was first reported with v1, whose code read
the child's ``vm_prev`` during dup_mmap -- the stale copy of the parent's -- so Wei Yang
measured the as-merged behaviour (``v5.5``), not the intended one (``wei-intended``).
Both are compared with the kernel the patch was written for (``v5.4``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rmaplab import integrity, traces
from rmaplab.errors import RmaplabError
from rmaplab.model import POLICIES
from rmaplab.model.observe import walk_summary
from rmaplab.model.policies import Policy, get_policy
from rmaplab.paths import raw_dir, repo_root

# Allocation counters by call site, as `rmaplab measure` and the policy kernels name them.
COUNTS = ("anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare", "avc_alloc", "avc_fork",
          "avc_clone", "avc_prepare", "vma_alloc")
# Counters that say why a rule did or did not matter.
DIAGNOSTICS = ("mm_forks", "mm_forks_by_forked", "reuse_at_fork", "share_at_fork",
               "share_at_fork_by_forked", "reuse_test_src_null", "merge_anon_vma_checks",
               "merge_rules_disagree")
BASELINE = "v5.4"                     # the kernel the patch was written for
PATCHES = ("v5.5", "wei-intended")    # as merged (what was measured in 2019), as described
CLAIM_PCT = 20.0                      # the seed: "reduces 20% anon_vma allocation"
# 2019's rule (965f55dea0e3) against today's (879bca0a2c4f with the 6.18.8 mremap fixes).
COMPARED_RULES = ("singular", "uncowed")
WALK_MOMENTS = (("fork", "child"), ("fork", "parent"), ("end", "child"))


@dataclass
class RecordedBuild:
    shell: str
    events: list[tuple[int, dict[str, Any]]]
    live: dict[str, Any]
    meta: dict[str, Any]

    @property
    def preamble(self) -> list[tuple[int, dict[str, Any]]]:
        """The events before the build started (the tracer's own process)."""
        return self.events[: self.meta["preamble_events"]]


def recorded_builds(trace_dir: str | Path = "data/raw/traces") -> dict[str, RecordedBuild]:
    """Every recorded build below ``trace_dir`` (relative to the repository): each
    directory with trace.jsonl.gz, live_counts.json and metadata.json, as `rmaplab trace`
    writes them, named by the last word of its name (sh, bash; the newest of a name wins).
    Files under data/raw/ are checked against the manifest, others are read as they are."""
    root = Path(trace_dir)
    if not root.is_absolute():
        root = repo_root() / root
    builds: dict[str, RecordedBuild] = {}
    for found in sorted(root.rglob("trace.jsonl.gz")):
        d = found.parent
        shell = d.name.rsplit("-", 1)[-1]
        builds[shell] = RecordedBuild(
            shell, traces.load(integrity.checked(found)),
            json.loads(integrity.checked(d / "live_counts.json").read_text()),
            json.loads(integrity.checked(d / "metadata.json").read_text()))
    if not builds:
        raise RmaplabError("no recorded kernel build traces (trace.jsonl.gz) here", path=root,
                           hint="rmaplab trace --label kbuild-sh -- make -s -j2")
    return builds


def replay_builds(builds: dict[str, RecordedBuild], runs: list[tuple[str | Policy, str | None]],
                  walks: bool = False, thp: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay every build under each (policy, merge rule) of ``runs`` (None: the policy's own;
    a policy is a name or a Policy, e.g. a :func:`rmaplab.model.policies.variant`).
    ``thp``: the modelled kernel has transparent huge pages (the host; False to predict the
    User-Mode Linux policy kernels, where MAP_STACK sets no VM_NOHUGEPAGE).

    Returns the count table (one row per shell, policy, merge rule; the build's counts
    without the preamble) and, with ``walks``, the walk-length histograms of the same runs.
    """
    rows, walk_rows = [], []
    for shell, build in builds.items():
        pre = {}
        events = traces.decode(build.events)     # once for every run
        for spec, rule in runs:
            policy = get_policy(spec)
            r = traces.replay(events, policy=policy, merge_rule=rule, check="off",
                              walks=walks, thp=thp)
            key = r.merge_rule
            if key not in pre:
                pre[key] = traces.replay(build.preamble, merge_rule=key, check="off",
                                         thp=thp).counters
            c = r.counters
            rows.append({
                "shell": shell, "policy": policy.name, "merge_rule": r.merge_rule,
                "own_rule": r.merge_rule == policy.merge_rule,
                **{k: c[k] - pre[key][k] for k in COUNTS},
                **{k: c[k] for k in DIAGNOSTICS},
                "peak_anon_vma": c["peak_anon_vma"], "peak_avc": c["peak_avc"],
                "peak_bytes_618": c["peak_bytes_618"],
                "chain_mean": c["fork_chain_sum"] / max(c["fork_anon_vmas"], 1),
                "chain_max": c["fork_chain_max"],
                "walk_avcs_mean": c["fork_walk_sum"] / max(c["fork_anon_vmas"], 1),
                "walk_avcs_max": c["fork_walk_max"], "depth_max": c["depth_max"],
            })
            if walks:
                walk_rows += [{"shell": shell, "policy": policy.name,
                               "merge_rule": r.merge_rule, **w} for w in r.walks.rows()]
    return pd.DataFrame(rows), pd.DataFrame(walk_rows)


def merge_rule_effect(table: pd.DataFrame, columns: tuple[str, ...] = COUNTS) -> pd.DataFrame:
    """Each policy under both merge rules: the counts and their difference (singular - uncowed)."""
    wide = table.pivot_table(index=["shell", "policy"], columns="merge_rule",
                             values=[*columns, "merge_rules_disagree"], aggfunc="first")
    out = []
    for (shell, policy), row in wide.iterrows():
        rec: dict[str, Any] = {"shell": shell, "policy": policy,
                               "own rule": POLICIES[policy].merge_rule,
                               "checks where the rules differ":
                                   int(max(row[("merge_rules_disagree", r)] for r in COMPARED_RULES))}
        for col in columns:
            s, u = row[(col, "singular")], row[(col, "uncowed")]
            rec[f"{col} singular"] = int(s)
            rec[f"{col} uncowed"] = int(u)
            rec[f"{col} diff"] = int(s - u)
        out.append(rec)
    return pd.DataFrame(out)


def counter_differences(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per shell: how many of the count and diagnostic columns differ between policies a and b
    (each under its own merge rule)."""
    own = table[table["own_rule"]].set_index(["shell", "policy"])
    cols = [*COUNTS, *DIAGNOSTICS]
    rows = []
    for shell in sorted(table["shell"].unique()):
        x, y = own.loc[(shell, a), cols], own.loc[(shell, b), cols]
        rows.append({"shell": shell, "counters compared": len(cols),
                     "counters that differ": int((x != y).sum()),
                     f"anon_vma_alloc {a}": int(x["anon_vma_alloc"]),
                     f"anon_vma_alloc {b}": int(y["anon_vma_alloc"])})
    return pd.DataFrame(rows)


def savings(counts: pd.DataFrame, source: str) -> pd.DataFrame:
    """Savings of each patch against ``v5.4`` from one count table (shell, policy, COUNTS)."""
    t = counts.set_index(["shell", "policy"])
    rows = []
    for shell in sorted(counts["shell"].unique()):
        if (shell, BASELINE) not in t.index:
            continue
        base = t.loc[(shell, BASELINE)]
        for patch in PATCHES:
            if (shell, patch) not in t.index:
                continue
            p = t.loc[(shell, patch)]
            rows.append({
                "source": source, "shell": shell, "patch": patch,
                "anon_vma saved": int(base["anon_vma_alloc"] - p["anon_vma_alloc"]),
                "AVC saved": int(base["avc_alloc"] - p["avc_alloc"]),
                "% of all anon_vma": 100 * (base["anon_vma_alloc"] - p["anon_vma_alloc"])
                / base["anon_vma_alloc"],
                "% of fork-path anon_vma": 100 * (base["anon_vma_fork"] - p["anon_vma_fork"])
                / base["anon_vma_fork"],
                "% of all AVC": 100 * (base["avc_alloc"] - p["avc_alloc"]) / base["avc_alloc"],
            })
    return pd.DataFrame(rows)


def claim_comparison(model_savings: pd.DataFrame,
                     measured_savings: pd.DataFrame | None) -> pd.DataFrame:
    """The 20% claim beside each patch's saving: the model's, and the policy kernels' when
    measured ("not yet measured" otherwise -- never a placeholder number)."""
    rows = []
    for _, m in model_savings.iterrows():
        rec = {"shell": m["shell"], "patch": m["patch"],
               "what it is": ("as merged: what the 2019 numbers measured"
                              if m["patch"] == "v5.5" else "as described (never measured)"),
               "claim %": CLAIM_PCT,
               "model: % of all anon_vma": m["% of all anon_vma"],
               "model: share of the claim": m["% of all anon_vma"] / CLAIM_PCT}
        hit = None
        if measured_savings is not None:
            sel = measured_savings[(measured_savings["shell"] == m["shell"])
                                   & (measured_savings["patch"] == m["patch"])]
            hit = sel.iloc[0] if len(sel) else None
        rec["policy kernel: % of all anon_vma"] = (
            f"{hit['% of all anon_vma']:.2f}" if hit is not None else "not yet measured")
        rows.append(rec)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ policy kernels (UML)
KERNEL_COUNTS = ("anon_vma_alloc", "anon_vma_fork", "avc_alloc")


def uml_kbuild_dirs() -> list[Path]:
    """Complete `rmaplab kernel kbuild` campaigns in data/raw/uml/ (oldest first)."""
    from rmaplab.measure import data

    return [d for d in data.measurement_dirs("uml")
            if "-kbuild-" in d.name and not re.search(r"-incomplete(-\d+)?$", d.name)]


def uml_kbuild_counts(campaign: str | Path | None = "latest") -> pd.DataFrame | None:
    """The tinyconfig build counted inside the policy kernels, or None when not recorded.

    ``campaign`` is a directory written by `rmaplab kernel kbuild` (absolute, or relative
    to data/raw/), ``"latest"`` for every complete ``data/raw/uml/*-kbuild-*`` campaign of
    the newest campaign's kernel (campaigns are often split by policy to run side by side;
    per policy and shell the newest successful build is kept), or None/"" for none.  Files
    are checked against the manifest and read with :func:`rmaplab.kernel.kbuild.load` (one
    row per policy and shell); column ``ok`` is False for a build that failed, whose
    counts are those of a partial build.
    """
    from rmaplab.kernel import kbuild

    if not campaign:
        return None
    if campaign == "latest":
        wheres = uml_kbuild_dirs()
        if not wheres:
            return None
    else:
        where = Path(campaign)
        wheres = [where if where.is_absolute() else raw_dir() / where]
    frames = []
    for where in wheres:
        if not where.is_dir():
            raise RmaplabError("no such policy-kernel campaign directory", path=where,
                               hint="a directory written by `rmaplab kernel kbuild`")
        rel = where.resolve().relative_to(raw_dir().resolve())
        for name in ("metadata.json", "runs.csv"):
            integrity.raw_path(f"{rel.as_posix()}/{name}")
        runs = kbuild.load([where])
        missing = [c for c in ("policy", "shell", "exit_status", "failed", *KERNEL_COUNTS)
                   if c not in runs.columns]
        if missing:
            raise RmaplabError(f"runs.csv lacks {', '.join(missing)}", path=where / "runs.csv")
        runs["ok"] = (runs["exit_status"] == 0) & ~runs["failed"].astype(bool)
        runs["source"] = f"{rel.as_posix()}/runs.csv"
        frames.append(runs)
    runs = pd.concat(frames, ignore_index=True)
    # one kernel: the newest campaign's (a rebuilt kernel is another experiment)
    runs = runs[runs["kernel_key"] == runs["kernel_key"].iloc[-1]]
    # per policy and shell, the newest successful build (campaigns are oldest first)
    runs = runs.assign(_order=range(len(runs))).sort_values(["ok", "_order"])
    return (runs.drop_duplicates(["policy", "shell"], keep="last")
                .sort_values("_order").drop(columns="_order").reset_index(drop=True))


def savings_side_by_side(*tables: pd.DataFrame) -> pd.DataFrame:
    """Savings tables (:func:`savings`, one ``source`` each) side by side: per shell and
    patch, the % of all anon_vma and of all AVC each source saves against ``v5.4``."""
    both = pd.concat([t for t in tables if t is not None and len(t)], ignore_index=True)
    return both.pivot_table(index=["shell", "patch"], columns="source",
                            values=["% of all anon_vma", "% of all AVC"], sort=False)


def model_vs_kernel(model: pd.DataFrame, measured: pd.DataFrame | None) -> pd.DataFrame:
    """The model's replay under 965f55dea0e3's merge rule (which 6.12 runs) beside the
    policy kernels' counts, per shell, kernel policy and counter; "not yet measured" when
    absent, "build failed" for a failed build."""
    from rmaplab.model.policies import KERNEL_POLICIES

    sel = model[(model["merge_rule"] == "singular") & model["policy"].isin(KERNEL_POLICIES)]
    rows = []
    for _, r in sel.iterrows():
        hit = None
        if measured is not None:
            m = measured[(measured["shell"] == r["shell"]) & (measured["policy"] == r["policy"])]
            hit = m.iloc[0] if len(m) else None
        for counter in KERNEL_COUNTS:
            if hit is None:
                kernel, diff = "not yet measured", ""
            elif not hit["ok"]:
                kernel, diff = "build failed", ""
            else:
                kernel = int(hit[counter])
                diff = f"{100 * (kernel - r[counter]) / r[counter]:+.3f}"
            rows.append({"shell": r["shell"], "policy": r["policy"], "counter": counter,
                         "model (singular)": int(r[counter]), "policy kernel": kernel,
                         "diff %": diff})
    return pd.DataFrame(rows)


def savings_model_vs_kernel(model_savings: pd.DataFrame,
                            kernel_savings: pd.DataFrame | None) -> pd.DataFrame:
    """Each patch's saving against ``v5.4``, modelled (singular rule) beside measured."""
    cols = ["anon_vma saved", "AVC saved", "% of all anon_vma", "% of all AVC"]
    rows = []
    for _, m in model_savings.iterrows():
        hit = None
        if kernel_savings is not None:
            sel = kernel_savings[(kernel_savings["shell"] == m["shell"])
                                 & (kernel_savings["patch"] == m["patch"])]
            hit = sel.iloc[0] if len(sel) else None
        rec = {"shell": m["shell"], "patch": m["patch"]}
        for c in cols:
            rec[f"model: {c}"] = m[c]
            rec[f"policy kernel: {c}"] = hit[c] if hit is not None else "not yet measured"
        rows.append(rec)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ rmap-walk lengths
def walk_stats(walks: pd.DataFrame, by: tuple[str, ...] = ("shell", "policy")) -> pd.DataFrame:
    """VMA-weighted mean, median, p90, p99 and max walk length per group and moment."""
    rows = []
    for key, g in walks.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        records = g.to_dict("records")
        for moment, side in WALK_MOMENTS:
            s = walk_summary(records, moment, side)
            if s["vmas"]:
                rows.append({**dict(zip(by, key, strict=True)), "moment": moment,
                             "side": side, **s})
    return pd.DataFrame(rows)


def jobs_walk_cells(shells: tuple[str, ...] = ("sh", "bash"),
                    policies: tuple[str, ...] = ("v5.4", "v5.5", "wei-intended", "v6.0"),
                    jobs: tuple[int, ...] = (1, 2, 4, 8)) -> list[dict[str, Any]]:
    """Sweep cells: each recorded build rebuilt by the generator without resampling
    (``identity``), make's children interleaved ``jobs`` at a time, walks sampled."""
    from rmaplab.sweep import grid

    return grid(kind=["generated"], units=[1.0], shell=list(shells), make_forks=[False],
                jobs=list(jobs), seed=[0], identity=[True], walks=[True],
                policy=list(policies))


def walks_of_sweep(results: pd.DataFrame) -> pd.DataFrame:
    """The walk-length histograms of a sweep's ok cells, one row per (cell, value)."""
    rows = []
    for r in results[(results["status"] == "ok") & results["walks"].notna()].itertuples():
        rows += [{"shell": r.shell, "jobs": int(r.jobs), "policy": r.policy,
                  "merge_rule": r.merge_rule, **w} for w in json.loads(r.walks)]
    return pd.DataFrame(rows)
