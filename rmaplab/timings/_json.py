"""JSON reading shared by the JSON-based timing formats."""

from __future__ import annotations

import json
import re
from typing import Any

from rmaplab.errors import RmaplabError


def maybe_object(text: str) -> dict[str, Any] | None:
    """The JSON object in text, or None if it is not one (for sniffing)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def load_object(text: str, source: str) -> dict[str, Any]:
    """The JSON object in text; a clear error naming the line if it is not one."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RmaplabError(f"not valid JSON: {e.msg}", path=source, line=e.lineno) from None
    if not isinstance(obj, dict):
        raise RmaplabError("JSON is not an object", path=source)
    return obj


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def scalar_lines(text: str) -> dict[tuple, int]:
    """Line number of every scalar value in a JSON document, keyed by its path.

    ``("results", 0, "times", 3)`` -> the line holding that number.  The json module
    keeps no positions; this walk over the tokens does, so an error can name the line.
    """
    out: dict[tuple, int] = {}
    stack: list[list] = []          # [kind, key or index, expecting a key?]
    line, pos = 1, 0
    for m in _TOKEN.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        tok = m.group()
        top = stack[-1] if stack else None
        if tok in "{[":
            stack.append(["obj", None, True] if tok == "{" else ["arr", 0, False])
        elif tok in "}]":
            stack.pop()
        elif tok == ":":
            top[2] = False
        elif tok == ",":
            if top[0] == "arr":
                top[1] += 1
            else:
                top[2] = True
        elif top is not None and top[0] == "obj" and top[2]:
            top[1] = json.loads(tok)
        else:
            out[tuple(frame[1] for frame in stack)] = line
    return out


def check_time(value: Any, *, source: str, line: int | None, where: str) -> float:
    """A JSON time value as float; booleans, strings and nulls are errors naming the line."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RmaplabError(f"{where} is {json.dumps(value)}, not a number of seconds",
                           path=source, line=line)
    return float(value)
