"""`rmaplab data`: the raw-data manifest."""

from __future__ import annotations

from rmaplab.cli import _args
from rmaplab.cli._registry import command


@command("data")
def _data(sub) -> None:
    p = sub.add_parser("data", help="check or extend the raw-data manifest",
                       description="data/raw is immutable and checksummed (MANIFEST.sha256).")
    dsub = p.add_subparsers(dest="data_command", metavar="verify|add", required=True)
    v = dsub.add_parser("verify", help="check every raw file against the manifest")
    v.set_defaults(func=_run_data_verify)
    a = dsub.add_parser("add", help="record new raw files (never changes a recorded one)")
    a.add_argument("paths", nargs="+", type=_args.existing_path, metavar="PATH",
                   help="files or directories under data/raw")
    a.set_defaults(func=_run_data_add)


def _run_data_verify(args) -> int:
    from rmaplab import integrity

    n = integrity.verify()
    print(f"{n} raw files match data/raw/{integrity.MANIFEST_NAME}")
    return 0


def _run_data_add(args) -> int:
    from rmaplab import integrity

    added = integrity.add(args.paths)
    print(f"recorded {len(added)} new file(s)" + "".join(f"\n  {a}" for a in added))
    return 0
