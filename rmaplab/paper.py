"""Build paper/paper.pdf from paper/paper.typ with the typst Python package.

No TeX and no network: typst-py carries the compiler and fonts.  The document
reads paper/numbers.json and figures/*.svg itself; the timestamp is fixed so
the same inputs give the same PDF bytes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rmaplab import atomic
from rmaplab.errors import RmaplabError
from rmaplab.paths import output_root, repo_root

# A fixed document date keeps the PDF byte-identical across builds.
FIXED_TIMESTAMP = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())


def build(source: Path | None = None, output: Path | None = None) -> Path:
    import typst

    source = source or repo_root() / "paper" / "paper.typ"
    output = output or output_root() / "paper" / "paper.pdf"
    if not source.exists():
        raise RmaplabError("paper source missing", path=source)
    root = output_root()
    if root != repo_root():
        # Outputs redirected (tests): compile a copy next to the redirected numbers/figures.
        copy = root / "paper" / source.name
        atomic.write_bytes(copy, source.read_bytes())
        source = copy
    try:
        pdf = typst.compile(str(source), root=str(root), timestamp=FIXED_TIMESTAMP)
    except Exception as e:  # typst raises its own TypstError with the source location
        raise RmaplabError(f"typst failed: {str(e).strip().splitlines()[0]}", path=source) from e
    atomic.write_bytes(output, pdf)
    return output
