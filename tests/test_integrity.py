"""Raw data is checked against its sha256 manifest before analysis."""

from __future__ import annotations

import shutil

import pytest

from rmaplab import integrity
from rmaplab.errors import RmaplabError
from rmaplab.paths import raw_dir


def test_committed_raw_data_matches_its_manifest():
    assert integrity.verify() >= 2


def test_manifest_agrees_with_sha256sum_format():
    for line in integrity.manifest_path().read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert integrity.sha256(raw_dir() / name) == digest


@pytest.fixture
def raw_copy(tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(raw_dir(), root)
    return root


def test_modified_raw_file_is_refused(raw_copy):
    f = raw_copy / "seed" / "lkml-2019-10-11-wei-yang-v4-2of2.txt"
    f.write_text(f.read_text().replace("1m51.953s", "1m41.953s"))
    with pytest.raises(RmaplabError, match="does not match its sha256"):
        integrity.raw_path("seed/lkml-2019-10-11-wei-yang-v4-2of2.txt", root=raw_copy)


def test_unlisted_raw_file_is_refused(raw_copy):
    (raw_copy / "stray.txt").write_text("x")
    with pytest.raises(RmaplabError, match="not in the manifest"):
        integrity.verify(root=raw_copy)


def test_add_records_new_files_and_never_changes_old_ones(raw_copy):
    new = raw_copy / "run1" / "out.txt"
    new.parent.mkdir()
    new.write_text("counts")
    assert integrity.add([new.parent], root=raw_copy) == ["run1/out.txt"]
    assert integrity.verify(root=raw_copy) >= 3
    new.write_text("edited")
    with pytest.raises(RmaplabError, match="immutable"):
        integrity.add([new], root=raw_copy)
