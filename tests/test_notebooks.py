"""Stored notebooks carry outputs (else nbval would compare nothing) and declare parameters."""

from __future__ import annotations

import nbformat
import papermill
import pytest

from rmaplab.paths import notebooks_dir

NOTEBOOKS = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_executed_and_has_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    unexecuted = [i for i, c in enumerate(nb.cells)
                  if c in code and c.get("execution_count") is None]
    assert not unexecuted, f"cells {unexecuted} were never executed: run `make reproduce`"
    assert sum(len(c.outputs) for c in code) > 0
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_declares_papermill_parameters(path):
    assert papermill.inspect_notebook(str(path)), "no cell tagged 'parameters'"
