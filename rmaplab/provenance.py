"""Who made a result: git commit, notebook, parameters.  Recorded with every figure."""

from __future__ import annotations

import subprocess

from rmaplab.paths import repo_root


def git_commit() -> str:
    """HEAD's commit id, suffixed '+dirty' when tracked files differ from it."""
    root = repo_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--"],
                           capture_output=True).returncode != 0
    return head + ("+dirty" if dirty else "")
