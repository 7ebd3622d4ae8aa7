"""Host side: each command under setarch -L -R (legacy layout), guest-like environment."""
import json, subprocess, sys
sys.path.insert(0, "/work/wt/prepare-gap")
from cmds import CMDS, cwd
from envs import job_env
ENV = job_env()
names = sys.argv[1:] or list(CMDS)
out = {}
for n in names:
    p = subprocess.run(["setarch", "x86_64", "-L", "-R", "/work/main/.venv/bin/rmaplab", "measure",
                        "--no-record", "--json", "-i", "--", *CMDS[n]], env=ENV, cwd=cwd(n),
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        d = json.loads(p.stdout)
    except ValueError:
        print(n, "FAILED", p.stdout[-300:], p.stderr[-300:], file=sys.stderr); continue
    out[n] = {k: d[k] for k in ("anon_vma_prepare", "avc_prepare", "anon_vma_fork", "avc_clone",
                                "vma_alloc", "mm_forks", "execs")}
    out[n]["prepare_reused_neighbour"] = d["avc_prepare"] - d["anon_vma_prepare"]
    out[n]["exit_status"] = d.get("exit_status")
    print(n, out[n], file=sys.stderr)
json.dump(out, sys.stdout, indent=1)
