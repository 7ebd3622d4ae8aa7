"""The one exception type for problems a user can fix.

Everything user-facing (bad files, bad parameters, a missing tool) raises
:class:`RmaplabError`.  The command line prints it as one line and exits 2; any
other exception is a bug and is allowed to traceback.
"""

from __future__ import annotations

from pathlib import Path


class RmaplabError(Exception):
    """A user-fixable problem: what went wrong, where, and what to do."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        text = where + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text
