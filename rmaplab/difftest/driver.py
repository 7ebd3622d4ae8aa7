"""Run N random programs on a backend under each policy and compare with the model.

Program i has seed ``seed + i``.  A disagreement is shrunk to a minimal program and
saved as a case (rmaplab.difftest.cases) for a person to explain from the kernel
source and fix in the model.  A run can be recorded as a raw measurement under
data/raw/difftest/ (metadata, one row per program and policy, the programs).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmaplab import traces
from rmaplab.difftest import cases, interpreter
from rmaplab.difftest import shrink as shrinking
from rmaplab.difftest.backends import Backend, Outcome
from rmaplab.difftest.compare import Comparison, InvalidProgram, compare, model_counts
from rmaplab.difftest.generate import Params, generate
from rmaplab.measure import host
from rmaplab.measure.record import run_name, save
from rmaplab.paths import raw_dir, repo_root

Event = dict[str, Any]
UNEXPLAINED = "not yet explained"
BATCH = 100          # programs per backend call (a UML backend boots once per call)


def default_case_dir() -> Path:
    return repo_root() / "tests" / "data" / "difftest"


@dataclass
class ProgramResult:
    seed: int
    policy: str
    events: int
    seconds: float
    live: dict[str, int] | None = None
    model: dict[str, int] | None = None
    differences: dict[str, tuple[int, int]] = field(default_factory=dict)
    error: str | None = None
    case: str | None = None

    @property
    def agree(self) -> bool:
        return self.error is None and not self.differences


@dataclass
class Summary:
    backend: str
    merge_rule: str
    policies: list[str]
    params: Params
    seeds: list[int]
    results: list[ProgramResult]
    raw: str | None = None
    thp: bool = True

    @property
    def agreed(self) -> int:
        return sum(r.agree for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        secs = [r.seconds for r in self.results if r.error is None]
        by_policy = {p: sum(r.agree for r in self.results if r.policy == p)
                     for p in self.policies}
        return {
            "backend": self.backend, "merge_rule": self.merge_rule, "thp": self.thp,
            "policies": self.policies,
            "programs": len(self.seeds), "first_seed": self.seeds[0] if self.seeds else None,
            "params": asdict(self.params), "runs": len(self.results), "agree": self.agreed,
            "agree_by_policy": by_policy,
            "seconds_per_program": {"mean": statistics.fmean(secs) if secs else None,
                                    "median": statistics.median(secs) if secs else None},
            "mismatches": [{"seed": r.seed, "policy": r.policy,
                            "differences": {k: {"kernel": a, "model": b}
                                            for k, (a, b) in r.differences.items()},
                            "case": r.case} for r in self.results if r.differences],
            "errors": [{"seed": r.seed, "policy": r.policy, "error": r.error}
                       for r in self.results if r.error],
            "model_violations": [{"seed": r.seed, "policy": r.policy,
                                  "violations": r.model["violations"]}
                                 for r in self.results if r.model and r.model["violations"]],
            "raw": self.raw,
        }


def _judge(seed: int, policy: str, events: list[Event], outcome: Outcome,
           backend: Backend) -> tuple[ProgramResult, Comparison | None]:
    result = ProgramResult(seed, policy, len(events) - 1, outcome.seconds)
    if not outcome.ok:
        result.error = f"kernel: {outcome.error}"
        return result, None
    result.live = outcome.counts
    try:
        # Invariants checked too: under the pre-v6.0 policies a program can make the
        # model (and the policy kernel) leave a dangling page->mapping (CVE-2022-42703).
        result.model = model_counts(events, interpreter.prelude(outcome.mappings), policy,
                                    backend.merge_rule, check="incremental", thp=shrinking.backend_thp(backend))
    except InvalidProgram as e:
        result.error = f"model: {e}"
        return result, None
    comparison = compare(policy, outcome.counts, result.model, backend.keys)
    result.differences = comparison.differences
    return result, comparison


def save_case(events: list[Event], comparison: Comparison, prelude: list[Event],
              backend: Backend, found: str, path: Path) -> Path:
    """Save a shrunk disagreement, to be explained by hand (shows, source, title)."""
    keys = ", ".join(comparison.differences)
    case = cases.Case(
        title=f"{comparison.policy}: kernel and model differ on {keys}",
        shows=UNEXPLAINED, source=UNEXPLAINED, found=found, backend=backend.name,
        policy=comparison.policy, merge_rule=backend.merge_rule,
        kernel={k: comparison.live[k] for k in comparison.keys},
        model_before={k: b for k, (_, b) in comparison.differences.items()},
        prelude=prelude, events=events)
    return cases.save(case, path)


def run(n: int, seed: int, backend: Backend, policies: list[str], params: Params | None = None,
        shrink: bool = True, case_dir: Path | None = None,
        log: Callable[[str], None] | None = None) -> tuple[Summary, dict[int, list[Event]],
                                                              dict[tuple[int, str], Outcome]]:
    """Programs seed .. seed + n - 1 under each policy; shrink and save disagreements."""
    params = params or Params()
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    case_dir = case_dir or default_case_dir()
    seeds = list(range(seed, seed + n))
    programs = {s: generate(s, params) for s in seeds}
    results: list[ProgramResult] = []
    outcomes: dict[tuple[int, str], Outcome] = {}
    log(f"{backend.describe()}, policies {', '.join(policies)}: {n} programs "
        f"(seeds {seed}..{seed + n - 1})")
    for lo in range(0, n, BATCH):
        chunk = seeds[lo:lo + BATCH]
        ran = backend.run([programs[s] for s in chunk], policies)
        for policy in policies:
            for s, outcome in zip(chunk, ran[policy], strict=True):
                outcomes[(s, policy)] = outcome
                result, comparison = _judge(s, policy, programs[s], outcome, backend)
                results.append(result)
                if result.error:
                    log(f"  seed {s} {policy}: {result.error}")
                elif comparison is not None and not comparison.agree:
                    log(f"  seed {s} {policy}: {comparison.describe()}")
                    if shrink:
                        result.case = str(_shrink_and_save(s, programs[s], comparison,
                                                           outcome, backend, case_dir, log))
        log(f"  {lo + len(chunk)}/{n} programs run, {sum(r.agree for r in results)} of "
            f"{len(results)} runs agree")
    return (Summary(backend.name, backend.merge_rule, list(policies), params, seeds, results,
                    thp=shrinking.backend_thp(backend)), programs, outcomes)


def _shrink_and_save(seed: int, events: list[Event], comparison: Comparison,
                     outcome: Outcome, backend: Backend, case_dir: Path,
                     log: Callable[[str], None]) -> Path:
    key = shrinking.target(comparison)
    prelude = interpreter.prelude(outcome.mappings)
    small = shrinking.shrink(events, backend, comparison.policy, key, prelude, log=log)
    final = shrinking.run_and_compare(small, backend, comparison.policy)
    if final is None or final.agree:
        final, small = comparison, events         # the shrunk program stopped failing
    out = backend.run([small], [comparison.policy])[comparison.policy][0]
    path = case_dir / f"{backend.name}-{comparison.policy}-seed{seed}-{key}.jsonl"
    found = (f"rmaplab difftest --backend {backend.name} --policy {comparison.policy} "
             f"--merge-rule {backend.merge_rule} {'--thp' if shrinking.backend_thp(backend) else '--no-thp'} "
             f"--seed {seed} -n 1; shrunk from "
             f"{len(events) - 1} to {len(small) - 1} events")
    saved = save_case(small, final, interpreter.prelude(out.mappings) if out.ok else prelude,
                      backend, found, path)
    log(f"  saved {saved}")
    return saved


# ------------------------------------------------------------------ recording
def record(summary: Summary, programs: dict[int, list[Event]],
           outcomes: dict[tuple[int, str], Outcome], out_root: Path | None = None,
           extra: dict[str, Any] | None = None) -> Path:
    """Write the run as a new directory under data/raw/difftest/ (rmaplab.measure.record:
    atomic, never overwritten, added to the manifest)."""
    out_root = out_root or raw_dir() / "difftest"
    policies = "-".join(summary.policies) if len(summary.policies) < 3 else "policies"
    source = interpreter.source()
    keys = sorted({k for r in summary.results for k in (r.live or {})})
    footprints: dict[int, dict[str, list]] = {}
    for (s, p), o in outcomes.items():
        footprints.setdefault(s, {})[p] = [
            [m.start, m.end, m.perms, m.offset, m.path, m.anonymous_kb, " ".join(m.vm_flags)]
            for m in o.mappings]

    def write(d: Path) -> None:
        summary.raw = str(d.parent / name)
        meta = {
            "host": host.describe(), "summary": summary.as_dict(),
            "interpreter_sha256": hashlib.sha256(source).hexdigest(),
            "interpreter_cflags": list(interpreter.CFLAGS),
            "command": " ".join(sys.argv), **(extra or {}),
        }
        (d / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["seed", "policy", "events", "agree", "error", "seconds",
                         *[f"kernel_{k}" for k in keys], *[f"model_{k}" for k in keys]])
        for r in summary.results:
            writer.writerow([r.seed, r.policy, r.events, r.agree, r.error or "",
                             f"{r.seconds:.4f}", *[(r.live or {}).get(k, "") for k in keys],
                             *[(r.model or {}).get(k, "") for k in keys]])
        (d / "results.csv").write_text(buf.getvalue())
        lines = [json.dumps({"seed": s, "events": [json.loads(traces.dumps(e)) for e in events],
                             "footprint": footprints.get(s, {})}, separators=(",", ":"))
                 for s, events in programs.items()]
        (d / "programs.jsonl.gz").write_bytes(
            gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))

    name = run_name(f"{summary.backend}-{policies}")
    target = save(out_root, name, write)
    summary.raw = str(target)
    return target


__all__ = ["ProgramResult", "Summary", "default_case_dir", "record", "run", "save_case"]
