"""Who made a result: git commit, notebook, parameters.  Recorded with every figure."""

from __future__ import annotations

import subprocess

from rmaplab.paths import repo_root

# What a result is computed from.  Executed notebooks, figures and the paper are outputs:
# rewriting them while reproducing does not make the inputs dirty.
INPUTS = ("rmaplab", "data", "pyproject.toml", "constraints.txt")


def git_commit() -> str:
    """HEAD's commit id, suffixed '+dirty' when the inputs (code, data) differ from it."""
    root = repo_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", *INPUTS],
                             capture_output=True).returncode != 0
    untracked = subprocess.run(["git", "-C", str(root), "ls-files", "--others",
                                "--exclude-standard", "--", *INPUTS],
                               capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if changed or untracked else "")
