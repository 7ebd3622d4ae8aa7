"""`rmaplab timings` and `rmaplab compare`: timing files and small-n A/B inference."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rmaplab.cli._registry import command, json_out
from rmaplab.errors import RmaplabError


def _add_format_args(p: argparse.ArgumentParser) -> None:
    from rmaplab.timings import FORMATS

    p.add_argument("--format", default="auto", choices=["auto", *FORMATS],
                   help="input format (default: detect it)")
    p.add_argument("--time-format", metavar="FMT",
                   help="GNU time -f format the file was written with, e.g. '%%e %%U %%S'")


@command("timings")
def _timings(sub) -> None:
    from rmaplab.timings import FORMATS

    formats = "\n".join(f"  {name:<10} {mod.DESCRIPTION}" for name, mod in FORMATS.items())
    p = sub.add_parser(
        "timings", help="parse timing files into one tidy table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Parse timing output of common tools into one record per run and metric "
                    "(real, user, sys).\n\nformats:\n" + formats,
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _add_format_args(p)
    p.add_argument("--json", action="store_true", help="JSON records instead of a table")
    p.set_defaults(func=_run_timings)


def _run_timings(args) -> int:
    from rmaplab import timings

    records = timings.load_many(args.files, format=args.format, time_format=args.time_format)
    if args.json:
        json_out([r.as_dict() for r in records])
        return 0
    df = timings.to_frame(records)
    columns = ["source", "line", "group", "run", "metric", "seconds", "kind", "n"]
    if "exit_status" in df.columns and df["exit_status"].fillna(0).ne(0).any():
        columns.append("exit_status")
    print(df[columns].to_string(index=False))
    return 0


@command("compare")
def _compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="A/B inference on real/user/sys",
        description="Compare B against A per metric: the change of means with its interval "
                    "(Fieller, Welch df), Welch's t, Mann-Whitney U and a permutation test "
                    "(exact where exact is cheap, else Monte Carlo or normal; the method is "
                    "shown) with the smallest p the runs allow, Holm across metrics, "
                    "Hodges-Lehmann, bootstrap, power, TOST, drift against run order and a "
                    "user-time confounder check, and a verdict (rules in the README).  A and B "
                    "are two files, or one file holding two labelled groups (such as the seed "
                    "email).  Runs with a non-zero exit status are excluded, with a warning.",
    )
    p.add_argument("a", metavar="A", help="timing file for A (or for both groups)")
    p.add_argument("b", metavar="B", nargs="?", help="timing file for B")
    _add_format_args(p)
    p.add_argument("--groups", metavar="A,B", help="the two group labels to compare, in order")
    p.add_argument("--metric", action="append", choices=["real", "user", "sys"],
                   help="metric(s) to compare (default: all present)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level, below 0.5 (0.05)")
    p.add_argument("--margin", type=float, default=1.0, metavar="PCT",
                   help="equivalence margin for TOST, percent, between 0 and 100 (1.0)")
    p.add_argument("--target", type=float, metavar="PCT",
                   help="change (percent, above -100) for the runs-needed estimate "
                        "(default: the observed one)")
    p.add_argument("--seed", type=int, default=0, help="seed for Monte Carlo and bootstrap")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="every quantity per metric: medians, ranges, geometric means, "
                        "Hodges-Lehmann, bootstrap, power, TOST, drift")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_compare)


def _split_sides(df, args):
    """Return (frame A, frame B, label A, label B, same_file)."""
    groups = list(dict.fromkeys(df["group"].tolist()))
    if args.groups:
        wanted = [g.strip() for g in args.groups.split(",")]
        if len(wanted) != 2 or not all(wanted):
            raise RmaplabError(f"--groups takes two labels separated by a comma, got "
                               f"{args.groups!r}")
        if wanted[0] == wanted[1]:
            raise RmaplabError(f"--groups names {wanted[0]!r} twice; compare two different "
                               "groups")
        for g in wanted:
            if g not in groups:
                raise RmaplabError(f"no group {g!r}", path=args.a,
                                   hint="groups: " + ", ".join(map(str, groups)))
        groups = wanted
    elif len(groups) != 2:
        raise RmaplabError(
            f"one file must hold exactly two labelled groups to compare, found {len(groups)}: "
            + ", ".join(map(str, groups)), path=args.a,
            hint="label the groups with heading lines such as 'Origin:' and 'Patched:', "
                 "give two files, or pick two with --groups")
    a = df[df["group"] == groups[0]]
    b = df[df["group"] == groups[1]]
    return a, b, str(groups[0]), str(groups[1])


def _check_compare_args(args) -> None:
    """Refuse parameters the statistics cannot honour (one-line errors, exit 2)."""
    if not 0 < args.alpha < 0.5:
        raise RmaplabError(f"--alpha must be above 0 and below 0.5, got {args.alpha:g}",
                           hint="the equivalence test uses a 1-2*alpha interval")
    if not 0 < args.margin < 100:
        raise RmaplabError(f"--margin must be a percentage above 0 and below 100, "
                           f"got {args.margin:g}")
    if args.target is not None and not (math.isfinite(args.target) and args.target > -100
                                         and args.target != 0):
        raise RmaplabError(f"--target must be a non-zero finite percentage above -100, "
                           f"got {args.target:g}")
    if args.seed < 0:
        raise RmaplabError(f"--seed must be 0 or positive, got {args.seed}")
    if args.metric and len(set(args.metric)) != len(args.metric):
        twice = next(m for m in args.metric if args.metric.count(m) > 1)
        raise RmaplabError(f"--metric {twice} is given more than once")


def _run_compare(args) -> int:
    from rmaplab import timings
    from rmaplab.stats import compare, format_table

    _check_compare_args(args)
    load = lambda path: timings.to_frame(  # noqa: E731
        timings.load(path, format=args.format, time_format=args.time_format))
    if args.b is None:
        a, b, label_a, label_b = _split_sides(load(args.a), args)
        same_file = True
    else:
        a, b = load(args.a), load(args.b)
        labels = []
        for path, df in ((args.a, a), (args.b, b)):
            groups = list(dict.fromkeys(df["group"].tolist()))
            if len(groups) > 1:
                raise RmaplabError(f"holds {len(groups)} groups; compare one group per file",
                                   path=path, hint="or give one file and --groups A,B")
            labels.append(str(groups[0]) if groups[0] is not None else Path(path).name)
        label_a, label_b = labels
        same_file = False
    metrics = tuple(args.metric) if args.metric else ("real", "user", "sys")
    result = compare(a, b, label_a=label_a, label_b=label_b, metrics=metrics, alpha=args.alpha,
                     margin_pct=args.margin, target_pct=args.target, seed=args.seed,
                     same_file=same_file)
    if args.json:
        json_out(result.as_dict())
    else:
        print(format_table(result, verbose=args.verbose))
    return 0
