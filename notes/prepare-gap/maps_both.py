"""Run one command of cmds.py with dumpmaps.so on host (setarch -L -R) and guest; print both."""
import subprocess, sys
sys.path.insert(0, "/work/wt/prepare-gap")
from cmds import CMDS, T
from smaps import parse, fmt
from rmaplab.kernel.run import Job, run_batch
SO = "/work/wt/prepare-gap/dumpmaps.so"
from envs import job_env
ENV = job_env()
name = sys.argv[1]
argv = CMDS[name] if name in CMDS else sys.argv[2:]
import os
from cmds import cwd
HO, GO = f"{T}/dump-{name}-host.txt", f"{T}/dump-{name}-guest.txt"
for f in (HO, GO):
    if os.path.exists(f): os.unlink(f)
subprocess.run(["setarch", "x86_64", "-L", "-R", *argv], env={**ENV, "LD_PRELOAD": SO, "DUMPMAPS_OUT": HO},
               cwd=cwd(name), capture_output=True, text=True, stdin=subprocess.DEVNULL)
g = run_batch([Job("v6.0", argv, cwd=cwd(name), env={**ENV, "LD_PRELOAD": SO, "DUMPMAPS_OUT": GO})], writable=[T])[0]
class _H: pass
PICK = os.environ.get("PICK", "")
def pick(text):
    blocks = [b for b in text.split("=== end\n") if "=== smaps" in b]
    if PICK:
        blocks = [b for b in blocks if PICK in b.split("\n", 3)[1] or ("/" + PICK + "\n") in b]
    return blocks[-1] + "=== end\n"
h = _H(); h.stderr = pick(open(HO).read())
g["stderr"] = pick(open(GO).read())
open(f"/work/wt/prepare-gap/maps-{name}-host.txt", "w").write(fmt(parse(h.stderr)) + "\n")
open(f"/work/wt/prepare-gap/maps-{name}-guest.txt", "w").write(fmt(parse(g["stderr"])) + "\n")
print("HOST"); print(fmt(parse(h.stderr)))
print("GUEST", {k: g[k] for k in ("anon_vma_prepare", "prepare_reused_neighbour", "avc_clone_split")})
print(fmt(parse(g["stderr"])))
