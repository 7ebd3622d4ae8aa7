"""Shared test set-up.

Notebooks re-executed by nbval write figures and numbers; send them to a temporary
directory so `make test` never rewrites the committed results.  Kernels started by
nbval inherit this environment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "tests" / "data"


_OWN_OUTPUT_DIR: str | None = None


def pytest_configure(config):
    global _OWN_OUTPUT_DIR
    if "RMAPLAB_OUTPUT_DIR" not in os.environ:
        _OWN_OUTPUT_DIR = tempfile.mkdtemp(prefix="rmaplab-test-out-")
        os.environ["RMAPLAB_OUTPUT_DIR"] = _OWN_OUTPUT_DIR
    os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_collection_modifyitems(config, items):
    """interpreted_only tests patch model classes, which a compiled model does not allow."""
    marked = [item for item in items if item.get_closest_marker("interpreted_only")]
    if not marked:
        return
    from rmaplab.model import fastpath

    if fastpath.is_compiled():
        skip = pytest.mark.skip(reason="patches model classes: runs on the interpreted "
                                       "reference in tests/test_fastpath.py (RMAPLAB_PURE=1)")
        for item in marked:
            item.add_marker(skip)


def pytest_unconfigure(config):
    if _OWN_OUTPUT_DIR is not None:
        shutil.rmtree(_OWN_OUTPUT_DIR, ignore_errors=True)
        os.environ.pop("RMAPLAB_OUTPUT_DIR", None)


@pytest.fixture
def timing_file():
    def get(name: str) -> Path:
        return DATA / "timings" / name
    return get


@pytest.fixture
def seed_file() -> Path:
    return ROOT / "data" / "raw" / "seed" / "lkml-2019-10-11-wei-yang-v4-2of2.txt"


@pytest.fixture(scope="session")
def live_kernel():
    """perf must count tracepoints here; CI sets RMAPLAB_REQUIRE_PERF=1 so this never skips there."""
    from rmaplab.errors import RmaplabError
    from rmaplab.measure import perf

    try:
        perf.check()
    except RmaplabError as e:
        if os.environ.get("RMAPLAB_REQUIRE_PERF") == "1":
            pytest.fail(f"perf is required here but unusable: {e}")
        pytest.skip(f"perf unusable: {e}")
    return True


@pytest.fixture(scope="session")
def uml_kernel():
    """The UML policy kernel for the current patches (rmaplab kernel build).

    Without one the tests skip, unless RMAPLAB_REQUIRE_UML=1 (CI sets it), which
    builds it if needed and fails if that is impossible.
    """
    from rmaplab.errors import RmaplabError
    from rmaplab.kernel import build

    try:
        kernel = build.cached(build.current_key())
        if kernel is None and os.environ.get("RMAPLAB_REQUIRE_UML") == "1":
            kernel = build.build()
    except RmaplabError as e:
        if os.environ.get("RMAPLAB_REQUIRE_UML") == "1":
            pytest.fail(f"the UML kernel is required here but cannot be built: {e}")
        pytest.skip(f"no UML kernel: {e}")
    if kernel is None:
        pytest.skip("no UML kernel built for the current patches (rmaplab kernel build)")
    return kernel
