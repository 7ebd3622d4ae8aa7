#!/bin/sh
# host side: every command under the legacy layout, clean environment like the guest's
cd /work/main
args=$(/work/main/.venv/bin/python - "$@" <<'PY'
import sys, shlex
sys.path.insert(0, "/work/wt/prepare-gap")
from cmds import CMDS
names = sys.argv[1:] or list(CMDS)
out = []
for n in names:
    out += ["-n", n, shlex.join(CMDS[n])]
print(shlex.join(out))
PY
)
eval "set -- $args"
exec env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/tmp LANG=C \
  setarch x86_64 -L -R /work/main/.venv/bin/rmaplab measure --no-record --json --runs ${RUNS:-1} "$@"
