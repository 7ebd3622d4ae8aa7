"""Real kbuild compile commands of the idle host tinyconfig tree, outputs redirected to /work/tmp-prepare."""
import re, shlex
TREE = "/root/.cache/rmaplab/linux-source-6.12"
OUT = "/work/tmp-prepare"

def compile_cmd(obj):
    d, b = obj.rsplit("/", 1)
    text = open(f"{TREE}/{d}/.{b}.cmd").read().split("\n", 1)[0]
    cmd = text.split(":=", 1)[1].strip()
    argv = shlex.split(cmd)
    out = []
    for a in argv:
        if a.startswith("-Wp,-MMD,"):
            a = f"-Wp,-MMD,{OUT}/dep.d"
        out.append(a)
    i = out.index("-o")
    out[i + 1] = f"{OUT}/out.o"
    assert out[0] == "gcc"
    out[0] = "/usr/bin/gcc"
    return out
