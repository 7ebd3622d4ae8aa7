"""The command registry: each command module registers its subparser builder here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

COMMANDS: dict[str, Callable] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def json_out(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1, sort_keys=False, allow_nan=False)
    sys.stdout.write("\n")
