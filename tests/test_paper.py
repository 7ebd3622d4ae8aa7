"""Every number the paper prints comes from paper/numbers.json, and the PDF shows it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from rmaplab.paths import repo_root

TYP = repo_root() / "paper" / "paper.typ"
NUMBERS = repo_root() / "paper" / "numbers.json"


def keys_used() -> list[str]:
    text = "\n".join(line for line in TYP.read_text().splitlines()
                     if not line.lstrip().startswith("//"))
    return sorted(set(re.findall(r'#n\("([^"]+)"\)', text)))


def test_every_key_the_paper_uses_is_in_numbers_json():
    numbers = json.loads(NUMBERS.read_text())
    missing = [k for k in keys_used() if k not in numbers]
    assert not missing


def test_paper_has_no_hand_typed_result_numbers():
    """Digits followed by % or ' s' in prose must come from #n(); the claim's own quotes excepted."""
    text = TYP.read_text()
    allowed = {"20%", "11.6%",   # the seed's claims, quoted as claims
               "95%"}            # the confidence level, a choice rather than a result
    prose = re.sub(r"#n\([^)]*\)", "", text)
    prose = re.sub(r"width: \d+%", "", prose)
    prose = "\n".join(line for line in prose.splitlines() if not line.lstrip().startswith("//"))
    found = set(re.findall(r"\b\d+(?:\.\d+)?%", prose)) - allowed
    assert not found, f"typed-in percentages: {sorted(found)}"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_built_pdf_quotes_the_values_of_numbers_json(tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(repo_root() / "figures", out / "figures")
    (out / "paper").mkdir()
    shutil.copy(NUMBERS, out / "paper" / "numbers.json")
    monkeypatch.setenv("RMAPLAB_OUTPUT_DIR", str(out))
    from rmaplab import paper

    pdf = paper.build()
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = re.sub(r"\s+", " ", text)
    numbers = json.loads(NUMBERS.read_text())
    for key in keys_used():
        shown = numbers[key]["text"] + numbers[key]["unit"]
        assert shown in flat, f"{key}: {shown!r} not in the PDF text"
    assert "[missing" not in flat
