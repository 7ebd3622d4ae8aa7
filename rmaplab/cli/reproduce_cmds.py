"""`rmaplab reproduce`: notebooks, figures, paper."""

from __future__ import annotations

from typing import Any

from rmaplab.cli import _args
from rmaplab.cli._registry import command
from rmaplab.errors import RmaplabError


@command("reproduce")
def _reproduce(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="run every notebook, build figures and the paper",
        description="Execute notebooks/NN_*.ipynb in order with papermill (in place), then "
                    "build paper/paper.pdf.  Stops at the first failing notebook and keeps its "
                    "executed copy under build/failed/.",
    )
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   default=[], help="notebook parameter (VALUE is read as YAML: 3, true, 'x')")
    p.add_argument("-f", "--params-file", type=_args.existing_file, metavar="FILE",
                   help="YAML file of notebook parameters")
    p.add_argument("--only", action="append", metavar="NB",
                   help="run only this notebook (prefix such as 01, or stem); repeatable")
    p.add_argument("--no-paper", action="store_true", help="skip the PDF build")
    p.set_defaults(func=_run_reproduce)


def _run_reproduce(args) -> int:
    import yaml

    from rmaplab.atomic import writable_error
    from rmaplab.paths import notebooks_dir, output_root
    from rmaplab.reproduce import reproduce

    params: dict[str, Any] = {}
    if args.params_file:
        try:
            loaded = yaml.safe_load(args.params_file.read_text())
        except UnicodeDecodeError:
            raise RmaplabError("not UTF-8 text", path=args.params_file) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise RmaplabError(f"not valid YAML ({getattr(e, 'problem', None) or e})",
                               path=args.params_file,
                               line=mark.line + 1 if mark is not None else None) from None
        if not isinstance(loaded, dict):
            raise RmaplabError("parameters file must map names to values", path=args.params_file)
        params.update(loaded)
    for name, value in args.parameter:
        try:
            params[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise RmaplabError(f"parameter {name}: cannot read value {value!r}") from None
    for where in (notebooks_dir(), output_root()):
        if (why := writable_error(where)) is not None:
            raise RmaplabError(f"reproduce writes into {where}: {why}")
    reproduce(params, only=args.only, paper=not args.no_paper)
    return 0
