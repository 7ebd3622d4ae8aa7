"""Where things live.  Outputs can be redirected (tests do) without touching inputs.

``RMAPLAB_ROOT`` overrides the repository root (default: the checkout this package
is imported from).  ``RMAPLAB_OUTPUT_DIR`` redirects what notebooks write
(figures/, paper/numbers.json) so that re-executing notebooks under nbval does not
rewrite the committed results.
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    if env := os.environ.get("RMAPLAB_ROOT"):
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def output_root() -> Path:
    if env := os.environ.get("RMAPLAB_OUTPUT_DIR"):
        return Path(env).resolve()
    return repo_root()


def data_dir() -> Path:
    return repo_root() / "data"


def raw_dir() -> Path:
    return data_dir() / "raw"


def figures_dir() -> Path:
    return output_root() / "figures"


def paper_dir() -> Path:
    return output_root() / "paper"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def cache_dir() -> Path:
    """Big downloaded or generated inputs kept outside the repository (kernel trees)."""
    return Path(os.environ.get("RMAPLAB_CACHE", Path.home() / ".cache" / "rmaplab"))
