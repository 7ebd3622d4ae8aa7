"""Guest side: each command in one UML boot, policy v6.0."""
import json, sys
sys.path.insert(0, "/work/wt/prepare-gap")
from cmds import CMDS, T, cwd
from rmaplab.kernel.run import Job, run_batch
from envs import job_env
names = sys.argv[1:] or list(CMDS)
res = run_batch([Job("v6.0", CMDS[n], cwd=cwd(n), env=job_env()) for n in names], writable=[T], mem="1024M")
out = {}
for n, r in zip(names, res):
    out[n] = {k: r[k] for k in ("anon_vma_prepare", "prepare_reused_neighbour", "avc_prepare",
                                "anon_vma_fork", "avc_clone", "avc_clone_split", "vma_alloc",
                                "mm_forks", "execs", "exit_status", "error")}
    if r["exit_status"] != 0:
        print(n, r["stderr"][-500:], file=sys.stderr)
json.dump(out, sys.stdout, indent=1)
