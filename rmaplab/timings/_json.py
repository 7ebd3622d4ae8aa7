"""JSON reading shared by the JSON-based timing formats."""

from __future__ import annotations

import json
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
