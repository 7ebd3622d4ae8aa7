#!/bin/bash
# "Where a checked replay's time goes" (README.md): each variant switches off one part of the
# checks in a worktree of the model sources (line numbers as of 36b327a; unchanged through
# acaac62), builds it (python -m rmaplab.model build) and times three v6.0 replays of the sh
# build in one process (replay3.py), three times.  A variant whose build fails would run
# interpreted and take 15 s or more: such a time is a failed build, not a measurement.
#   variants.sh COMMIT
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-/work/main/.venv/bin/python}
WT=$(mktemp -d)/wt
git -C /work/main worktree add -q -f "$WT" "${1:-HEAD}"
run() {  # name file sed-expression
  git -C "$WT" checkout -q rmaplab/model
  [ -n "$3" ] && sed -i "$3" "$WT/rmaplab/model/$2"
  (cd "$WT" && PYTHONPATH=$WT "$PY" -m rmaplab.model build >/dev/null 2>&1) || echo "$1: BUILD FAILED"
  for i in 1 2 3; do echo "$1 $(cd "$WT" && PYTHONPATH=$WT "$PY" "$HERE/replay3.py" incremental 3)"; done
}
run all-checks machine.py ""
run no-family machine.py '546s/invariants.check_family(root, report)/pass/;549s/invariants.check_family(root, report)/pass/'
run no-range machine.py '528s/invariants.check_mm_range(ranged, self._range_lo, self._range_hi, report)/pass/'
run no-whole-mm machine.py '539s/invariants.check_mm(mm, report)/pass/'
run range-without-pages invariants.py '171s/    if not mm.pages:/    if mm.pid >= 0:/'
run range-stopped-after-window invariants.py '144s/.*/    if mm.pid >= 0:\n        return\n    outside: list[Vma] = _NO_VMAS/'
(cd "$WT" && PYTHONPATH=$WT "$PY" "$HERE/replay3.py" off 3 | sed 's/^/checks-off /')
git -C /work/main worktree remove --force "$WT"
