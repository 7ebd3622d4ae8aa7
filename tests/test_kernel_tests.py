"""The kernel's own VMA tests, replayed on the model under their kernel's merge rule.

tests/data/kernel_tests/<kernel>/*.jsonl translate tools/testing/vma/vma.c (6.12.118 and
6.18.26) and tools/testing/selftests/mm/merge.c (6.18.26) to event traces whose
checkpoints are the tests' own assertions (rmaplab.kernel_tests); index.json accounts
for every test of each file, translated or skipped with its reason.  The reference is
the kernel tests' expectation, not the model's output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rmaplab import kernel_tests
from rmaplab.errors import RmaplabError
from rmaplab.model import POLICIES
from rmaplab.model.vma import VmaMixin

ROOT = Path(__file__).parent / "data" / "kernel_tests"
TRANSLATIONS = kernel_tests.discover(ROOT)
CASES = [pytest.param(t, s, id=f"{t.path.parent.name}/{t.path.stem}@{s.kernel}")
         for t in TRANSLATIONS for s in t.sources]
INDEX = json.loads((ROOT / "index.json").read_text())


def by_name(name: str) -> kernel_tests.Translation:
    return next(t for t in TRANSLATIONS if t.path.relative_to(ROOT).as_posix() == name)


@pytest.mark.parametrize("translation, source", CASES)
def test_model_meets_the_kernel_tests_expectation(translation, source):
    assert kernel_tests.run(translation, source.merge_rule) == []


def test_every_kernel_test_is_translated_or_skipped_with_a_reason():
    """index.json lists each source's tests exactly once; translations and headers agree."""
    sources = INDEX["sources"]
    for key, src in sources.items():
        entries = [e for e in INDEX["tests"] if e["source"] == key]
        names = [e["function"] for e in entries]
        assert len(names) == len(set(names)) == src["tests_in_file"], key
    cited = set()
    for entry in INDEX["tests"]:
        assert ("translation" in entry) != ("skipped" in entry), entry
        if "skipped" in entry:
            assert len(entry["skipped"]) > 20, entry
            continue
        src = sources[entry["source"]]
        header = {(s.kernel, s.file, s.function): s
                  for s in by_name(entry["translation"]).sources}
        source = header.get((src["kernel"], src["file"], entry["function"]))
        assert source is not None, f"{entry['translation']} does not cite {entry}"
        assert source.merge_rule == src["merge_rule"]
        cited.add((entry["translation"], source))
    every = {(t.path.relative_to(ROOT).as_posix(), s) for t in TRANSLATIONS for s in t.sources}
    assert every == cited, "translations whose sources are missing from index.json"


@pytest.mark.parametrize("translation, source", CASES)
def test_merge_rule_is_the_one_of_the_kernel_version(translation, source):
    """965f55dea0e3's rule until 6.15, 879bca0a2c4f's from 6.16."""
    major, minor = (int(x) for x in source.kernel.split(".")[:2])
    assert source.merge_rule == ("singular" if (major, minor) < (6, 16) else "uncowed")


def test_each_translation_cites_line_ranges_of_its_kernel_file():
    for t in TRANSLATIONS:
        for s in t.sources:
            assert re.fullmatch(r"\d+-\d+", s.lines), (t.path, s)


def test_the_relaxed_merges_fail_under_the_pre_6_16_rule():
    """selftests/mm/merge.c: a faulted range next to an unfaulted one 'for ~15 years' did
    not merge; the same trace under 965f55dea0e3's rule must miss the checkpoint."""
    translation = by_name("6.18/merge_mprotect_unfaulted_left.jsonl")
    mismatches = kernel_tests.run(translation, "singular")
    assert "merge_mprotect_unfaulted_left.jsonl:13: VMA 0x10001000: end 0x10006000, " \
        "expected 0x1000b000" in mismatches


def test_without_61f67c230a5e_the_merged_vma_loses_the_anon_vma():
    """Under 6.16..6.18.7's rule the unfaulted VMA that absorbs the moved faulted one gets no
    anon_vma, and MREMAP_DONTUNMAP frees the anon_vma its page still points to (the UAF)."""
    translation = by_name("6.18/merge_with_fork_mremap_faulted_to_unfaulted_prev.jsonl")
    mismatches = kernel_tests.run(translation, "uncowed-6.16")
    assert any("page-mapping-freed" in m for m in mismatches), mismatches
    assert any("has no anon_vma" in m for m in mismatches), mismatches


def test_without_3b617fd3d317_a_forked_source_merges():
    """Under 6.16..6.18.7's rule the forked child's moved VMA merges into the unfaulted one."""
    translation = by_name("6.18/merge_with_fork_mremap_faulted_to_unfaulted_prev.jsonl")
    mismatches = kernel_tests.run(translation, "uncowed-6.16")
    assert any("VMA 0x10001000: end 0x10007000, expected 0x10004000" in m
               for m in mismatches), mismatches


@pytest.mark.interpreted_only
def test_in_place_mremap_growth_merges_with_the_next_vma(monkeypatch):
    """Planted regression: growing the VMA without vma_merge_extend() (the model before this
    translation) leaves test_merge_extend's two VMAs apart."""
    def grow_only(self, vma, delta):
        vma.end += delta
        return vma

    monkeypatch.setattr(VmaMixin, "vma_merge_extend", grow_only)
    mismatches = kernel_tests.run(by_name("6.12/merge_extend.jsonl"), "singular")
    assert mismatches and "2 VMAs, expected 1" in mismatches[0]


def write(tmp_path, body: str) -> Path:
    header = ('# kernel-test: {"sources": [{"kernel": "6.18.26", "file": "f.c", '
              '"function": "t", "lines": "1-2", "merge_rule": "uncowed"}]}\n')
    path = tmp_path / "t.jsonl"
    path.write_text(header + body)
    return path


def test_a_malformed_checkpoint_names_its_line(tmp_path):
    path = write(tmp_path, '{"op":"spawn","pid":1}\n#= {"pid": 1, "vmas": [{"start": 0}]}\n')
    with pytest.raises(RmaplabError, match=r"t\.jsonl:3.*start and end"):
        kernel_tests.load(path)


def test_a_translation_without_checkpoints_is_refused(tmp_path):
    with pytest.raises(RmaplabError, match="at least one"):
        kernel_tests.load(write(tmp_path, '{"op":"spawn","pid":1}\n'))


def test_labels_bind_objects_both_ways(tmp_path):
    """Two labels never name one VMA: a checkpoint claiming so is a mismatch."""
    path = write(tmp_path, '{"op":"spawn","pid":1}\n'
                 '{"op":"mmap","pid":1,"start":"0x10000000","end":"0x10001000","prot":"rw"}\n'
                 '#= {"pid":1,"vmas":[{"start":"0x10000000","end":"0x10001000","vma":"a"}]}\n'
                 '#= {"pid":1,"vmas":[{"start":"0x10000000","end":"0x10001000","vma":"b"}]}\n')
    mismatches = kernel_tests.run(kernel_tests.load(path), "uncowed")
    assert mismatches == ["t.jsonl:5: VMA 0x10000000: VMA 'b' is the same object as 'a'"]


def test_unexpected_syscall_errors_are_mismatches(tmp_path):
    path = write(tmp_path, '{"op":"spawn","pid":1}\n'
                 '{"op":"mprotect","pid":1,"start":"0x10000000","end":"0x10001000","prot":"r"}\n'
                 '#= {"pid":1,"vmas":[]}\n')
    assert kernel_tests.run(kernel_tests.load(path), "uncowed") == [
        "t.jsonl:4: 1 failed syscall(s), expected 0"]


@pytest.mark.parametrize("policy", list(POLICIES))
def test_each_policy_replays_with_the_rule_its_eras_kernel_tests_expect(policy):
    """With no merge rule given, a policy replays under its era's rule (Policy.merge_rule),
    and that rule meets every translated kernel test of a kernel that ran it: the 2019-era
    policies 6.12's (965f55dea0e3), v6.0 and the v6.0+ policies 6.18.26's (879bca0a2c4f)."""
    rule = POLICIES[policy].merge_rule
    cases = [(t, s) for t in TRANSLATIONS for s in t.sources if s.merge_rule == rule]
    assert cases
    for translation, source in cases:
        assert kernel_tests.run(translation, None, policy=policy) == [], \
            (translation.path.name, source.kernel)
