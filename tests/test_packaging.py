"""environment.yml (for conda users) lists what pyproject.toml does; no conda here to try it."""

from __future__ import annotations

import re
import tomllib

import yaml

from rmaplab.paths import repo_root


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    wanted = {_name(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    # dask[distributed] is two conda packages
    wanted = (wanted - {"dask"}) | {"dask", "distributed"}
    env = yaml.safe_load((repo_root() / "environment.yml").read_text())
    listed = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed |= {_name(s) for s in dep["pip"] if not s.startswith("-e")}
        else:
            listed.add(_name(dep))
    listed -= {"python", "pip"}
    assert listed == wanted


def test_constraints_pin_every_direct_dependency():
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    pins = {_name(line) for line in (repo_root() / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    direct = {_name(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert direct <= pins
