"""The event-trace format: validation with line numbers, gzip, round trips, replay --json."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rmaplab import traces, workloads
from rmaplab.errors import RmaplabError


def write(tmp_path, lines, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("line, message", [
    ('{"op":"spawn"}', "pid must be an integer"),
    ('{"op":"frobnicate","pid":1}', "unknown op 'frobnicate'"),
    ('{"op":"mmap","pid":1,"start":4096,"end":8192}', "mmap: missing prot"),
    ('{"op":"mmap","pid":1,"start":4097,"end":8192,"prot":"rw"}', "not page-aligned"),
    ('{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rwz"}', "prot 'rwz'"),
    ('{"op":"touch","pid":1,"addr":"0xzz","write":true}', "addr '0xzz' is not an address"),
    ('{"op":"touch","pid":1,"addr":4096,"write":1}', "write must be true or false"),
    ('{"op":"madvise","pid":1,"start":4096,"end":8192,"advice":"free"}', "advice 'free'"),
    ('{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rw","stack":1}',
     "stack must be true or false"),
    ('{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rw","stack":null}',
     "stack must be true or false"),
    ('{"op":"fork","pid":1,"child":2,"extra":3}', "unknown field(s) extra"),
    ('{"op":"munmap","pid":1,"start":8192,"end":4096}', "empty or inverted range"),
    ('not json', "not valid JSON"),
    ('[1,2]', "not a JSON object"),
    # Values of the wrong kind where a name is looked up: errors, never a crash.
    ('{"op":["mmap"],"pid":1}', "unknown op .'mmap'."),
    ('{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rw","flags":[[]]}',
     "flags must be a list of"),
    ('{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rw","pgoff":true}',
     "pgoff must be a non-negative"),
    ('{"op":"mremap","pid":1,"start":4096,"end":8192,"new_start":12289,"new_end":16384}',
     "new_start is not page-aligned"),
    ('{"op":"spawn","pid":1.5}', "pid must be an integer"),
    ('{"op":"spawn","pid":true}', "pid must be an integer"),
    ('{"op":"fork","pid":1,"child":99999999999999999999999}', "child must be an integer"),
    ('{"op":"touch","pid":1,"addr":"0x1000","write":true}\xff', "not valid JSON"),
])
def test_malformed_lines_are_errors_naming_the_line(tmp_path, line, message):
    path = write(tmp_path, ['# a comment', '{"op":"spawn","pid":1}', line])
    for load in (traces.load, traces.load_for_replay):
        with pytest.raises(RmaplabError,
                           match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            load(path)
        assert e.value.line == 3 and e.value.path == str(path)


def test_semantic_errors_in_replay_name_the_line(tmp_path):
    path = write(tmp_path, ['{"op":"spawn","pid":1}', '# a comment',
                            '{"op":"fork","pid":7,"child":8}'])
    for events in (traces.load(path), traces.load_for_replay(path), traces.read(path)):
        with pytest.raises(RmaplabError, match=r"t.jsonl:3: fork: no process 7"):
            traces.replay(events, source=str(path))


def test_decode_lays_out_each_op_as_the_model_reads_it():
    # Hand-written: the nine fields Kernel.apply_fields reads (rmaplab.model.machine's layout).
    from rmaplab.model import machine as m
    from rmaplab.model.structs import VM_GROWSDOWN, VM_PFNMAP, VM_READ, VM_WRITE

    assert m.decode({"op": "mmap", "pid": 3, "start": 4096, "end": 8192, "prot": "rw",
                     "flags": ["growsdown", "special"], "stack": True, "file": "f",
                     "pgoff": 2, "shared": True}) == (
        m.OP_MMAP, 3, 4096, 8192, VM_READ | VM_WRITE, VM_GROWSDOWN | VM_PFNMAP, 1 | 2, 2, "f")
    assert m.decode({"op": "mmap", "pid": 3, "start": 0, "end": 4096, "prot": ""}) == (
        m.OP_MMAP, 3, 0, 4096, 0, 0, 0, 0, None)
    assert m.decode({"op": "brk", "pid": 1, "end": 8192}) == (m.OP_BRK, 1, 8192, 0, 0, 0, 0,
                                                               0, None)
    assert m.decode({"op": "brk", "pid": 1, "end": 8192, "start": 0})[3] == 1   # start + 1
    assert m.decode({"op": "touch", "pid": 1, "addr": 4096, "write": True})[2:4] == (4096, 1)
    assert m.decode({"op": "mremap", "pid": 1, "start": 0, "end": 4096, "new_start": 8192,
                     "new_end": 12288, "dontunmap": True}) == (
        m.OP_MREMAP, 1, 0, 4096, 8192, 12288, 1, 0, None)
    assert m.decode({"op": "madvise", "pid": 1, "start": 0, "end": 4096,
                     "advice": "dontfork"})[8] == "dontfork"
    assert m.decode({"op": "exit", "pid": 9}) == (m.OP_EXIT, 9, 0, 0, 0, 0, 0, 0, None)
    assert [m.OP_NAMES[m.decode({"op": name, "pid": 1, "child": 2, "start": 0, "end": 4096,
                                 "prot": "r", "addr": 0, "write": False, "advice": "dontneed",
                                 "new_start": 0, "new_end": 4096})[0]]
            for name in m.OP_NAMES] == list(m.OP_NAMES)
    with pytest.raises(m.EventError, match="unknown op 'frob'"):
        m.decode({"op": "frob", "pid": 1})


def test_pack_writes_each_field_as_a_little_endian_word():
    # By hand: two events, 64 bytes each; strings 1-based in order of first use.
    import struct

    from rmaplab.model import machine as m

    events = [(m.OP_MMAP, 7, 0x7f0000001000, 0x7f0000003000, 3, 0x100, 2, 5, "libc"),
              (m.OP_MADVISE, 7, 4096, 8192, 0, 0, 0, 0, "dontfork"),
              (m.OP_EXIT, 7, 0, 0, 0, 0, 0, 0, None)]
    data, strings = m.pack(events)
    assert strings == ["libc", "dontfork"]
    assert data == (struct.pack("<8Q", 0 | 7 << 8, 0x7f0000001000, 0x7f0000003000, 3, 0x100,
                                2, 5, 1)
                    + struct.pack("<8Q", 9 | 7 << 8, 4096, 8192, 0, 0, 0, 0, 2)
                    + struct.pack("<8Q", 5 | 7 << 8, 0, 0, 0, 0, 0, 0, 0))
    # A field of 48 bits or more, or a pid of 32: not packed (Decoded keeps the tuples).
    assert m.pack([(m.OP_MUNMAP, 1, 0, 1 << 48, 0, 0, 0, 0, None)]) is None
    assert m.pack([(m.OP_EXIT, 1 << 32, 0, 0, 0, 0, 0, 0, None)]) is None
    assert m.pack([(m.OP_MUNMAP, (1 << 32) - 1, 0, (1 << 48) - 1, 0, 0, 0, 0, None)])


def test_unpack_inverts_pack():
    from rmaplab.model import machine as m

    events = [(m.OP_MMAP, (1 << 32) - 1, 0x7f0000001000, (1 << 48) - 1, 3, 0x100, 2, 5,
               "libc"), (m.OP_MADVISE, 7, 4096, 8192, 0, 0, 0, 0, "dontfork"),
              (m.OP_MMAP, 0, 4096, 8192, 1, 0, 0, 0, "libc"),
              (m.OP_EXIT, 7, 0, 0, 0, 0, 0, 0, None)]
    data, strings = m.pack(events)
    assert m.unpack(data, strings) == events


@pytest.mark.parametrize("batch", [1, 4, 7, 1000])
def test_a_trace_packed_a_batch_at_a_time_is_the_trace_packed_whole(monkeypatch, tmp_path,
                                                                      batch):
    from rmaplab.model import machine as m

    path = _strings_trace(tmp_path)
    lines, tuples = [], []
    m.decode_all(traces.read(path), lines, tuples)
    whole = traces.Decoded(lines, tuples)                # pack() over every event at once
    assert whole.data is not None
    monkeypatch.setattr(traces, "PACK_BATCH", batch)
    assert traces._decode_stream(traces.read(path), str(path)) == whole
    # A value pack() cannot hold after the first batches: every event as tuples.
    path = _strings_trace(tmp_path, extra=['{"op":"spawn","pid":4294967296}',
                                           '{"op":"exit","pid":4294967296}'])
    lines, tuples = [], []
    m.decode_all(traces.read(path), lines, tuples)
    got = traces._decode_stream(traces.read(path), str(path))
    assert got.data is None and got.events == tuples and list(got.lines) == lines


def test_an_address_of_48_bits_replays_from_tuples_as_packed_ones_would(tmp_path):
    # Beyond user space, but the trace format allows it: the replay is the same as a
    # stream's, one event at a time.
    path = write(tmp_path, ['{"op":"spawn","pid":1}',
                            '{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rw"}',
                            '{"op":"touch","pid":1,"addr":4096,"write":true}',
                            '{"op":"mmap","pid":1,"start":"0x1000000000000",'
                            '"end":"0x1000000001000","prot":"rw"}',
                            '{"op":"exit","pid":1}'])
    decoded = traces.load_for_replay(path)
    assert decoded.data is None and len(decoded.events) == 5
    small = traces.decode(traces.load(path)[:3])
    assert small.data is not None and small.events is None
    assert (traces.replay(decoded).as_dict() == traces.replay(traces.read(path)).as_dict())


def test_decoded_list_and_stream_replays_are_the_same(tmp_path):
    from rmaplab.difftest import generate

    path = traces.write(generate.generate(3, generate.Params(events=400)), tmp_path / "g.jsonl")
    numbered = traces.load(path)
    decoded = traces.load_for_replay(path)
    assert list(decoded.lines) == [line for line, _ in numbered]
    for policy in ("v5.4", "v6.0"):
        results = [traces.replay(events, policy=policy).as_dict()
                   for events in (numbered, decoded, traces.read(path))]
        assert results[0] == results[1] == results[2]
        assert results[0]["events"] == len(numbered) > 100


def test_addresses_may_be_hex_strings_and_ends_are_page_aligned_up(tmp_path):
    path = write(tmp_path, ['{"op":"spawn","pid":1}',
                            '{"op":"mmap","pid":1,"start":"0x1000","end":"0x1801","prot":"rw"}'])
    ev = traces.load(path)[1][1]
    assert (ev["start"], ev["end"]) == (0x1000, 0x2000)


def test_write_then_read_round_trips_plain_and_gzipped(tmp_path):
    events = [e for _, e in workloads.numbered(workloads.chain_exited(4, 3))]
    for name in ("w.jsonl", "w.jsonl.gz"):
        path = traces.write(events, tmp_path / name, header="# made by a test\n")
        assert [e for _, e in traces.load(path)] == events
    assert gzip.decompress((tmp_path / "w.jsonl.gz").read_bytes()).startswith(b"# made by")


def test_replay_json_follows_the_contract(tmp_path):
    events = [e for _, e in workloads.numbered(workloads.split(4, 2))]
    path = traces.write(events, tmp_path / "split.jsonl")
    out = subprocess.run([sys.executable, "-m", "rmaplab", "replay", str(path), "--policy",
                          "v6.0", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    for key in ("policy", "events", "anon_vma_alloc", "anon_vma_fork", "anon_vma_prepare",
                "avc_alloc", "vma_alloc", "violations"):
        assert key in r
    assert r["policy"] == "v6.0" and r["events"] == len(events)
    assert r["anon_vma_fork"] == 8 and r["violations"] == []


def test_replay_all_policies_table(tmp_path):
    path = traces.write([e for _, e in workloads.numbered(workloads.split(4, 2))],
                        tmp_path / "s.jsonl")
    out = subprocess.run([sys.executable, "-m", "rmaplab", "replay", str(path), "--policy",
                          "all"], capture_output=True, text=True)
    assert out.returncode == 0
    assert all(p in out.stdout for p in ("no-reuse", "v5.4", "v5.5", "wei-intended", "v6.0"))


def test_replay_uses_each_policys_merge_rule_unless_one_is_given(tmp_path):
    path = traces.write([e for _, e in workloads.numbered(workloads.split(4, 2))],
                        tmp_path / "s.jsonl")

    def rules(*extra):
        out = subprocess.run([sys.executable, "-m", "rmaplab", "replay", str(path), "--policy",
                              "all", "--json", *extra], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return {r["policy"]: r["merge_rule"] for r in json.loads(out.stdout)}

    own = rules()
    assert own["v5.4"] == own["v5.5"] == "singular" and own["v6.0"] == "uncowed"
    assert set(rules("--merge-rule", "uncowed").values()) == {"uncowed"}


def test_replay_walks_reports_walk_length_histograms(tmp_path):
    path = traces.write([e for _, e in workloads.numbered(workloads.split(4, 2))],
                        tmp_path / "s.jsonl")
    out = subprocess.run([sys.executable, "-m", "rmaplab", "replay", str(path), "--policy",
                          "v5.5", "--walks", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    walks = json.loads(out.stdout)["walks"]
    # two sequential children: VMA 1 of each has its own anon_vma, VMAs 2..4 the parent's
    child = {w["avcs"]: w["vmas"] for w in walks if (w["moment"], w["side"]) == ("fork", "child")}
    assert child == {1.0: 2, 2.0: 6}
    text = subprocess.run([sys.executable, "-m", "rmaplab", "replay", str(path), "--policy",
                           "v5.5", "--walks"], capture_output=True, text=True)
    assert "walk fork/child max" in text.stdout


def test_missing_trace_is_a_clear_error():
    out = subprocess.run([sys.executable, "-m", "rmaplab", "replay", "/no/such.jsonl"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no such file: '/no/such.jsonl'" in out.stderr


def test_stack_is_optional_and_written_only_when_true(tmp_path):
    path = write(tmp_path, ['{"op":"spawn","pid":1}',
                            '{"op":"mmap","pid":1,"start":4096,"end":8192,"prot":"rw"}',
                            '{"op":"mmap","pid":1,"start":8192,"end":12288,"prot":"rw",'
                            '"stack":true}',
                            '{"op":"madvise","pid":1,"start":4096,"end":8192,'
                            '"advice":"nohugepage"}'])
    events = [e for _, e in traces.load(path)]
    assert [e.get("stack") for e in events[1:3]] == [False, True]
    assert '"stack"' not in traces.dumps(events[1])
    assert '"stack":true' in traces.dumps(events[2])
    again = traces.write(events, tmp_path / "again.jsonl")
    assert [e for _, e in traces.load(again)] == events


def test_replay_thp_option_reaches_the_model_and_the_json(tmp_path):
    """mergetest 4 (tests/data/mapstack): 2 prepares on this THP kernel, 1 without THP."""
    from conftest import DATA

    trace = DATA / "mapstack" / "mergetest-4.jsonl"
    got = {}
    for opt in ([], ["--no-thp"]):
        out = subprocess.run([sys.executable, "-m", "rmaplab", "replay", str(trace), "--json",
                              *opt], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout)
        got[r["thp"]] = (r["anon_vma_prepare"], r["avc_clone"])
    assert got == {True: (2, 0), False: (1, 1)}


def test_a_line_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"op":"spawn","pid":1}\n{"op":"exec","pid":1,"comm":"\xff"}\n')
    with pytest.raises(RmaplabError, match="not valid UTF-8") as e:
        traces.load(path)
    assert e.value.line == 2


def _cache_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RMAPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RMAPLAB_TRACE_CACHE", raising=False)
    monkeypatch.setattr(traces, "CACHE_MIN_BYTES", 0)
    return tmp_path / "cache" / "parsed-traces"


def _fork_trace(tmp_path):
    return traces.write(workloads.sep(3, 2), tmp_path / "t.jsonl.gz")


def test_a_parsed_trace_is_cached_and_read_back_equal(monkeypatch, tmp_path):
    cache = _cache_env(monkeypatch, tmp_path)
    path = _fork_trace(tmp_path)
    first = traces.load(path)
    files = list(cache.glob("*.pickle"))
    assert len(files) == 1
    second = traces.load(path)
    assert second == first and second is not first
    # The cached copy is what the second load returned: damage it and it is passed over.
    files[0].write_bytes(b"not a pickle")
    assert traces.load(path) == first
    assert files[0].read_bytes() != b"not a pickle"        # parsed again and rewritten


def test_a_decoded_trace_is_cached_apart_and_read_back_equal(monkeypatch, tmp_path):
    cache = _cache_env(monkeypatch, tmp_path)
    path = _fork_trace(tmp_path)
    want = traces.decode(traces.load(path))
    first = traces.load_for_replay(path)
    files = list(cache.glob("*.decoded.pickle"))
    assert len(files) == 1 and len(list(cache.glob("*.pickle"))) == 2
    second = traces.load_for_replay(path)
    assert second == first == want and second is not first and want.data is not None
    # A dict-events pickle where a decoded one belongs (or junk) is passed over.
    for foreign in (next(p for p in cache.glob("*.pickle") if p not in files).read_bytes(),
                    b"not a pickle"):
        files[0].write_bytes(foreign)
        assert traces.load_for_replay(path) == want


def test_a_changed_trace_is_parsed_afresh(monkeypatch, tmp_path):
    cache = _cache_env(monkeypatch, tmp_path)
    path = _fork_trace(tmp_path)
    before = traces.load(path)
    events = [ev for _, ev in before]
    traces.write(events[:-1], path)                        # same name, other bytes
    after = traces.load(path)
    assert len(after) == len(before) - 1
    assert len(list(cache.glob("*.pickle"))) == 2


def test_the_cache_can_be_turned_off_and_small_traces_skip_it(monkeypatch, tmp_path):
    cache = _cache_env(monkeypatch, tmp_path)
    path = _fork_trace(tmp_path)
    monkeypatch.setenv("RMAPLAB_TRACE_CACHE", "0")
    traces.load(path)
    assert not cache.exists()
    monkeypatch.delenv("RMAPLAB_TRACE_CACHE")
    monkeypatch.setattr(traces, "CACHE_MIN_BYTES", path.stat().st_size + 1)
    traces.load(path)
    assert not cache.exists()


def test_an_unwritable_cache_only_costs_time(monkeypatch, tmp_path):
    _cache_env(monkeypatch, tmp_path)
    (tmp_path / "cache").write_text("a file where the cache directory would be")
    path = _fork_trace(tmp_path)
    assert traces.load(path) == traces.load(path)


def test_a_damaged_gzip_stream_is_an_error_naming_the_file(tmp_path):
    path = traces.write(workloads.sep(3, 2), tmp_path / "t.jsonl.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                           # inside the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(RmaplabError, match="cannot read trace|not valid") as e:
        traces.load(path)
    assert e.value.path == str(path)


def test_a_cached_pickle_that_does_not_match_its_digest_is_parsed_again(monkeypatch, tmp_path):
    import pickle

    cache = _cache_env(monkeypatch, tmp_path)
    path = _fork_trace(tmp_path)
    first = traces.load(path)
    cached = next(cache.glob("*.pickle"))
    blob = bytearray(cached.read_bytes())
    # A still-loadable change (a prot string) and a foreign but well-formed pickle.
    at = blob.find(b"rw")
    blob[at + 1:at + 2] = b"x"
    for damaged in (bytes(blob), pickle.dumps([(1, {"op": "exit", "pid": 1})])):
        cached.write_bytes(damaged)
        assert traces.load(path) == first


def test_the_cache_key_covers_the_validators_sources_not_the_loaded_modules(monkeypatch):
    import hashlib

    import orjson

    from rmaplab.model import machine

    monkeypatch.setattr(traces, "_VALIDATOR_DIGEST", None)
    # Compiled, machine and structs load from build/fast/...so: their .py must be read.
    monkeypatch.setattr(machine, "__file__", "/nonexistent/machine.cpython-311.so")
    here = Path(traces.__file__).parent
    h = hashlib.sha256()
    for f in ("traces.py", "model/machine.py", "model/structs.py"):
        h.update((here / f).read_bytes())
    h.update(orjson.__version__.encode())
    assert traces._validator_digest() == h.hexdigest()[:16]


def test_bare_cr_line_ends_split_lines_as_text_mode_did(tmp_path):
    """Old Mac line ends: each CR ends a line, and errors name the line a text editor
    shows (the loader read traces as text, with universal newlines, before orjson)."""
    path = tmp_path / "cr.jsonl"
    path.write_bytes(b'# cr only\r{"op":"spawn","pid":1}\r{"op":"mmap","pid":1,'
                     b'"start":4096,"end":8192,"prot":"rw"}\r\r{"op":"exit","pid":1}\r\n')
    assert [(i, ev["op"]) for i, ev in traces.load(path)] == [(2, "spawn"), (3, "mmap"),
                                                               (5, "exit")]
    path.write_bytes(b'{"op":"spawn","pid":1}\r\n{"op":"spawn","pid":2}\r{"op":"exit"')
    with pytest.raises(traces.TraceError) as e:
        traces.load(path)
    assert e.value.line == 3 and "not valid JSON" in str(e.value)


def test_escaped_lone_surrogates_are_json_and_load(tmp_path):
    """orjson refuses "\\ud800" escapes; they are valid JSON (json.loads reads them, as the
    loader did before orjson), so such a line loads as it did."""
    path = write(tmp_path, ['{"op":"spawn","pid":1,"comm":"sh\\ud800"}',
                            '{"op":"exec","pid":1,"comm":"\\udfff"}'])
    events = traces.load(path)
    assert [ev.get("comm") for _, ev in events] == ["sh\ud800", "\udfff"]
    assert traces.replay(events).counters["spawns"] == 1


def test_an_interrupted_replay_of_several_policies_leaves_no_executor_thread():
    """Interrupted, replay_policies kills its workers and waits for the executor's manager
    thread: left running, it closes its wake-up pipe while the interpreter exits and
    CPython 3.11's exit hook writes to it (a traceback after `rmaplab replay:
    interrupted`, found by CI)."""
    import threading
    from concurrent.futures import process

    from rmaplab import workloads

    events = list(workloads.numbered(workloads.split(300, 300)))

    def interrupt(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        traces.replay_policies(events, ["v5.4", "v5.5", "v6.0", "no-reuse"], jobs=2,
                               progress=interrupt)
    assert not [t for t in threading.enumerate()
                if isinstance(t, process._ExecutorManagerThread) and t.is_alive()]


def _sleepy_worker(spec, plugin_source, merge_rule, check, source, walks, thp=True):
    """Stands in for traces._replay_worker (module level: the pool pickles it by name)."""
    import os
    import time

    start = time.monotonic()
    time.sleep(0.5)
    with open(os.environ["RMAPLAB_TEST_SCHEDULE_LOG"], "a") as log:
        log.write(f"{spec} {start} {time.monotonic()}\n")
    return {"policy": spec}


@pytest.mark.parametrize("jobs", [None, 2])
def test_policies_run_one_per_cpu_and_the_last_cpus_plus_one_together(monkeypatch, tmp_path,
                                                                        jobs):
    # Seven equal replays on two CPUs: two at a time leaves the seventh alone on one CPU
    # (4 replays' time).  By default the last three start together (3.5); a --jobs given
    # is a limit, never exceeded.
    import os

    from rmaplab.model import POLICIES

    log = tmp_path / "schedule"
    monkeypatch.setenv("RMAPLAB_TEST_SCHEDULE_LOG", str(log))
    monkeypatch.setattr(traces, "_replay_worker", _sleepy_worker)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    policies = list(POLICIES)
    assert len(policies) == 7
    results = traces.replay_policies(traces.Decoded([], []), policies, jobs=jobs)
    assert [r["policy"] for r in results] == policies        # in the order given
    runs = sorted((float(a), float(b)) for _, a, b in
                  (line.split() for line in log.read_text().splitlines()))
    at_start = [sum(1 for a, b in runs if a <= s < b) for s, _ in runs]
    if jobs is None:
        assert max(at_start[:4]) <= 2 and at_start[-1] == 3
    else:
        assert max(at_start) <= 2


def test_an_event_built_in_code_that_cannot_be_decoded_is_an_error_naming_its_line():
    # A list that never went through validate(): replay decodes it first and says where.
    events = [(1, {"op": "spawn", "pid": 1}),
              (2, {"op": "mmap", "pid": 1, "start": 4096, "end": 8192}),     # no prot
              (3, {"op": "frob", "pid": 1})]
    with pytest.raises(RmaplabError, match=r"^prog:2: cannot decode this event: missing "
                                           r"field 'prot'$"):
        traces.replay(events, source="prog")
    with pytest.raises(RmaplabError, match=r"^prog:3: unknown op 'frob'$"):
        traces.replay([events[0], events[2]], source="prog")
    # A hand-made Decoded with an op code the model does not know: named, not an IndexError.
    with pytest.raises(RmaplabError, match=r"^prog:7: op code 99: unknown op code 99$"):
        traces.replay(traces.Decoded([7], [(99, 1, 0, 0, 0, 0, 0, 0, None)]), source="prog")


# ---------------------------------------------------------------- parsing by slices
def _sliced(monkeypatch, cpus=4, min_bytes=64):
    """Slice even small traces, into up to ``cpus`` slices (each a forked parser)."""
    monkeypatch.setenv("RMAPLAB_TRACE_CACHE", "0")
    monkeypatch.setattr(traces, "PARALLEL_MIN_BYTES", min_bytes)
    monkeypatch.setattr(traces.os, "cpu_count", lambda: cpus)
    _no_other_threads(monkeypatch)


def _no_other_threads(monkeypatch):
    """As in `rmaplab replay` (one thread): a thread some earlier test left running (a
    pool's manager, a dask client) would turn the slices off."""
    monkeypatch.setattr(traces.threading, "active_count", lambda: 1)


def _one_cpu(path):
    """The trace as one parse on one CPU decodes it (the reference)."""
    return traces._decode_stream(traces.read(path), str(path))


def _strings_trace(tmp_path, name="s.jsonl.gz", extra=()):
    """Mappings of files whose names first appear all along the trace (some in one slice
    only, some in several), madvise strings, comments and blank lines."""
    lines = ['# header', '{"op":"spawn","pid":1}']
    for i in range(120):
        lines.append(json.dumps({"op": "mmap", "pid": 1, "start": hex((i + 16) << 12),
                                 "end": hex((i + 17) << 12), "prot": "r",
                                 "file": f"lib{i % 7}.so" if i % 3 else f"only{i}.so"}))
        if i % 10 == 0:
            lines += ["", "# a comment", json.dumps(
                {"op": "madvise", "pid": 1, "start": hex((i + 16) << 12),
                 "end": hex((i + 17) << 12), "advice": "dontfork" if i % 20 else "dofork"})]
    lines += [*extra, '{"op":"exit","pid":1}']
    return _write_text(tmp_path / name, lines)


def _write_text(path, lines):
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("cpus", [2, 3, 5])
def test_slices_decode_what_one_parse_decodes(monkeypatch, tmp_path, cpus):
    path = _strings_trace(tmp_path)
    want = _one_cpu(path)
    _sliced(monkeypatch, cpus)
    got = traces._decode_in_slices(path, None)
    assert got is not None and got == want
    # The strings renumbered: each once, in order of first use in the file.
    first_use = []
    for _, ev in traces.read(path):
        s = ev.get("file") or ev.get("advice")
        if s is not None and s not in first_use:
            first_use.append(s)
    assert got.strings == first_use
    assert traces.load_for_replay(path) == want
    assert traces.replay(got).counters == traces.replay(want).counters


def test_slices_decode_the_recorded_build_as_one_parse_does(monkeypatch):
    from rmaplab.paths import repo_root

    path = (repo_root() / "data/raw/traces/20261129T163725Z-kbuild-sh/trace.jsonl.gz")
    monkeypatch.setattr(traces.os, "cpu_count", lambda: 2)
    _no_other_threads(monkeypatch)
    got = traces._decode_in_slices(path, None)
    assert got is not None and got == _one_cpu(path) and len(got) > 500_000


@pytest.mark.parametrize("bad_at", ["early", "late", "both"])
def test_the_first_error_of_any_slice_is_the_one_reported(monkeypatch, tmp_path, bad_at):
    lines = ['{"op":"spawn","pid":1}'] + [
        json.dumps({"op": "touch", "pid": 1, "addr": hex(4096 * (i + 1)), "write": True})
        for i in range(300)] + ['{"op":"exit","pid":1}']
    bad = '{"op":"touch","pid":1,"addr":"0xzz","write":true}'
    if bad_at in ("early", "both"):
        lines[40] = bad
    if bad_at in ("late", "both"):
        lines[250] = '{"op":"nope","pid":1}'
    path = _write_text(tmp_path / "bad.jsonl", lines)
    with pytest.raises(traces.TraceError) as serial:
        _one_cpu(path)
    _sliced(monkeypatch, cpus=4)
    with pytest.raises(traces.TraceError) as sliced:
        traces._decode_in_slices(path, None)
    assert str(sliced.value) == str(serial.value)
    assert sliced.value.line == (251 if bad_at == "late" else 41)


def test_where_slices_do_not_apply_one_cpu_parses(monkeypatch, tmp_path):
    _sliced(monkeypatch, cpus=4)
    # Bare CRs end lines: a trace with one is not sliced, and its lines are as before.
    cr = tmp_path / "cr.jsonl"
    cr.write_bytes(b'{"op":"spawn","pid":1}\r{"op":"exit","pid":1}\n' * 40)
    assert traces._decode_in_slices(cr, None) is None
    assert traces.load_for_replay(cr) == _one_cpu(cr)
    # A damaged gzip stream: the one-CPU parse reports it.
    path = _strings_trace(tmp_path)
    damaged = tmp_path / "d.jsonl.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert traces._decode_in_slices(damaged, None) is None
    with pytest.raises(RmaplabError) as e:
        traces.load_for_replay(damaged)
    assert e.value.path == str(damaged)
    # One CPU, or too little text.
    monkeypatch.setattr(traces.os, "cpu_count", lambda: 1)
    assert traces._decode_in_slices(path, None) is None
    monkeypatch.setattr(traces.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(traces, "PARALLEL_MIN_BYTES", 1 << 30)
    assert traces._decode_in_slices(path, None) is None


def test_a_value_packing_cannot_hold_in_a_later_slice_keeps_the_tuples(monkeypatch, tmp_path):
    path = _strings_trace(tmp_path, extra=['{"op":"spawn","pid":4294967296}',
                                           '{"op":"exit","pid":4294967296}'])
    want = _one_cpu(path)
    assert want.data is None                            # a pid of 2**32: tuples
    _sliced(monkeypatch, cpus=3)
    assert traces._decode_in_slices(path, None) is None
    assert traces.load_for_replay(path) == want


def test_a_slice_parser_that_dies_costs_only_time(monkeypatch, tmp_path):
    import os

    path = _strings_trace(tmp_path)
    want = _one_cpu(path)
    _sliced(monkeypatch, cpus=3)
    monkeypatch.setattr(traces, "_slice_worker", lambda *args: os._exit(1))
    assert traces._decode_in_slices(path, None) is None
    assert traces.load_for_replay(path) == want


def test_an_interrupted_sliced_parse_leaves_no_worker(monkeypatch, tmp_path):
    import multiprocessing

    path = _strings_trace(tmp_path)
    _sliced(monkeypatch, cpus=3)
    real = traces._decode_slice

    def interrupted_in_the_parent(*args):
        if multiprocessing.parent_process() is None:    # this process's own slice
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(traces, "_decode_slice", interrupted_in_the_parent)
    with pytest.raises(KeyboardInterrupt):
        traces._decode_in_slices(path, None)
    assert multiprocessing.active_children() == []


def test_no_slices_in_a_daemon_process_or_beside_other_threads(monkeypatch, tmp_path):
    """A daemon process may not have children, and a child forked while another thread
    runs can inherit a lock that thread holds: one CPU parses (found by a fuzzing review:
    an AssertionError from multiprocessing, and a result mixing two threads' traces)."""
    import multiprocessing
    import threading

    path = _strings_trace(tmp_path)
    want = _one_cpu(path)
    monkeypatch.setenv("RMAPLAB_TRACE_CACHE", "0")
    monkeypatch.setattr(traces, "PARALLEL_MIN_BYTES", 64)
    monkeypatch.setattr(traces.os, "cpu_count", lambda: 3)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert traces._decode_in_slices(path, None) is None
        assert traces.load_for_replay(path) == want
    finally:
        stop.set()
        other.join()
    _no_other_threads(monkeypatch)

    def in_a_daemon(send):
        send.send((traces._decode_in_slices(path, None) is None,
                   traces.load_for_replay(path) == want))

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=in_a_daemon, args=(send,), daemon=True)
    proc.start()
    assert receive.recv() == (True, True)
    proc.join()


def test_a_slice_parser_out_of_memory_costs_only_time(monkeypatch, tmp_path):
    import multiprocessing

    path = _strings_trace(tmp_path)
    want = _one_cpu(path)
    _sliced(monkeypatch, cpus=3)
    real = traces._decode_stream

    def no_memory_in_a_child(*args):
        if multiprocessing.parent_process() is not None:
            raise MemoryError
        return real(*args)

    monkeypatch.setattr(traces, "_decode_stream", no_memory_in_a_child)
    assert traces._decode_in_slices(path, None) is None
    assert traces.load_for_replay(path) == want


def test_json_too_deep_for_orjson_gets_one_error_whatever_the_stack(monkeypatch, tmp_path):
    """A line orjson refuses (a lone surrogate) goes to json.loads, whose parser recurses:
    nested deep, where it failed depended on the caller's stack depth, so a forked slice
    parser reported "not valid JSON" and one CPU "unknown field(s) x, y" (fuzzing review).
    Deeper than 100 is refused before json.loads; shallower loads as before."""
    import sys

    deep = (b'{"op":"exit","pid":1,"x":"\\ud800","y":' + b"[" * 500 + b"]" * 500 + b"}")
    shallow = (b'{"op":"exit","pid":1,"x":"\\ud800","y":' + b"[" * 99 + b"]" * 99 + b"}")
    lines = [b'{"op":"exit","pid":1}'] * 200
    for line, message in ((deep, "not valid JSON"), (shallow, r"unknown field\(s\) x, y")):
        path = tmp_path / "deep.jsonl"
        path.write_bytes(b"\n".join([*lines, line]) + b"\n")
        with pytest.raises(traces.TraceError, match=message) as serial:
            _one_cpu(path)
        assert serial.value.line == 201

        def nested(k, path=path):           # the same load from a deeper stack
            return nested(k - 1, path) if k else _one_cpu(path)

        limit = sys.getrecursionlimit()
        with pytest.raises(traces.TraceError, match=message) as deeper:
            nested(min(600, limit - 200))
        assert str(deeper.value) == str(serial.value)
        with monkeypatch.context() as m:
            _sliced(m, cpus=2)
            with pytest.raises(traces.TraceError) as sliced:
                traces._decode_in_slices(path, None)
        assert str(sliced.value) == str(serial.value)


def test_gzip_not_named_gz_is_the_same_error_from_the_cache_path(monkeypatch, tmp_path):
    """Read from bytes in memory (the cache path hashes them first) there is no peek():
    the check looked at nothing, and orjson's "not valid UTF-8" came instead."""
    cache = _cache_env(monkeypatch, tmp_path)
    path = tmp_path / "x.jsonl"
    path.write_bytes(gzip.compress(b'{"op":"spawn","pid":1}\n', mtime=0))
    for load in (traces.load, traces.load_for_replay, lambda p: list(traces.read(p))):
        with pytest.raises(traces.TraceError, match="gzip-compressed, but not named .gz"):
            load(path)
    assert not list(cache.glob("*.pickle"))
