"""Guest: lib/ partial build in a tree copy: delete objects, warm-up build, delete, measured build."""
import json, os, sys
sys.path.insert(0, "/work/wt/prepare-gap")
from cmds import CMDS, T, cwd
from envs import job_env
from rmaplab.kernel.run import Job, run_batch
name = sys.argv[1]
tree = cwd(name)
rm = ["/usr/bin/find", "lib", "-name", "*.o", "-delete"]
jobs = [Job("v6.0", rm, cwd=tree, env=job_env()), Job("v6.0", CMDS[name], cwd=tree, env=job_env()),
        Job("v6.0", rm, cwd=tree, env=job_env()), Job("v6.0", CMDS[name], cwd=tree, env=job_env())]
res = run_batch(jobs, writable=[T], mem="1024M")
keys = ("anon_vma_prepare", "prepare_reused_neighbour", "avc_prepare", "anon_vma_fork", "avc_clone",
        "avc_clone_split", "vma_alloc", "mm_forks", "execs", "exit_status", "error")
out = {"warmup": {k: res[1][k] for k in keys}, name: {k: res[3][k] for k in keys}}
json.dump(out, sys.stdout, indent=1)
