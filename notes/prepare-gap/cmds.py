"""Small commands run on both sides (host: setarch -L -R; guest: UML 6.12, v6.0)."""
T = "/work/tmp-prepare"
CC1 = "/usr/lib/gcc/x86_64-linux-gnu/12/cc1"
CMDS = {
    "true": ["/bin/true"],
    "busybox-true": ["/bin/busybox", "true"],
    "dash-c-true": ["/bin/dash", "-c", "true"],
    "dash-2true": ["/bin/dash", "-c", "/bin/true; /bin/true"],
    "cat": ["/bin/cat", "/dev/null"],
    "sed": ["/bin/sed", "-n", "p", f"{T}/t.c"],
    "make-v": ["/usr/bin/make", "-v"],
    "python3": ["/usr/bin/python3", "-c", "pass"],
    "cc1": [CC1, "-quiet", "-m32", f"{T}/t.c", "-o", "/dev/null"],
    "as": ["/usr/bin/as", "--32", f"{T}/t.s", "-o", "/dev/null"],
    "ld": ["/usr/bin/ld", "-m", "elf_i386", "-r", f"{T}/t.o", "-o", f"{T}/t-r.o"],
    "gcc-c": ["/usr/bin/gcc", "-m32", "-c", f"{T}/t.c", "-o", f"{T}/t2.o"],
}

import sys as _sys
_sys.path.insert(0, "/work/wt/prepare-gap")
from kcmds import compile_cmd, TREE
KOBJS = ["kernel/fork.o", "init/main.o", "lib/string.o", "kernel/printk/printk.o", "mm/memory.o"]
CWD = {}
for _o in KOBJS:
    _n = "kcc-" + _o.replace("/", "_")
    CMDS[_n] = compile_cmd(_o)
    CWD[_n] = TREE
# a few more small programs the build runs a lot
CMDS.update({
    "rm": ["/bin/rm", "-f", f"{T}/nonexistent"],
    "mkdir": ["/bin/mkdir", "-p", f"{T}/d"],
    "wc": ["/usr/bin/wc", "-l", f"{T}/t.c"],
    "tr": ["/bin/sh", "-c", f"exec /usr/bin/tr a b < {T}/t.c"],
    "sh-exec-true": ["/bin/sh", "-c", "exec /bin/true"],
    "fixdep": [f"{TREE}/scripts/basic/fixdep", f"{T}/dep.d", "kernel/fork.o", "true"],
})
CWD["fixdep"] = TREE
def cwd(name):
    return CWD.get(name, T)
for _m in range(4):
    CMDS[f"mt{_m}"] = ["/work/wt/prepare-gap/mergetest", str(_m)]
CMDS.update({
    "ar": ["/usr/bin/ar", "cDPrST", f"{T}/built-in.a", f"{T}/t.o", f"{T}/t2.o"],
    "xargs": ["/usr/bin/xargs", "-a", f"{T}/t.c", "/bin/true"],
    "grep": ["/bin/grep", "-q", "x", f"{T}/t.c"],
    "sed-big": ["/bin/sed", "-e", "s/a/b/g", f"{TREE}/kernel/.fork.o.cmd"],
    "nm": ["/usr/bin/nm", f"{T}/t.o"],
})
# a partial build: lib/ of copies of the tinyconfig tree (objects deleted before each run)
CMDS["mk-lib"] = ["/usr/bin/make", "-s", "-j2", "lib/"]
CWD["mk-lib"] = f"{T}/tree"
CMDS["mk-lib2"] = ["/usr/bin/make", "-s", "-j2", "lib/"]
CWD["mk-lib2"] = f"{T}/tree2"
# the cc1 and as steps of two kernel compiles (gcc -###), .s kept under T
import json as _json, re as _re
for _tag, _short in (("kernel_fork.o", "fork"), ("lib_string.o", "string")):
    _steps = _json.load(open(f"/work/wt/prepare-gap/steps-{_tag}.json"))
    _s = f"{T}/k-{_short}.s"
    _cc1 = [(_s if _re.match(r"^/tmp/cc.*\.s$", a) else a) for a in _steps[0]]
    _as = [(_s if _re.match(r"^/tmp/cc.*\.s$", a) else a) for a in _steps[1]]
    _as[0] = "/usr/bin/as"
    _as = [(f"{T}/k-{_short}.o" if a == f"{T}/out.o" else a) for a in _as]
    CMDS[f"kcc1-{_short}"] = _cc1; CWD[f"kcc1-{_short}"] = TREE
    CMDS[f"kas-{_short}"] = _as; CWD[f"kas-{_short}"] = TREE
for _n in (0, 20):
    CMDS[f"make-spawn{_n}"] = ["/usr/bin/make", "-s", "-f", f"{T}/mk/Makefile.{_n}"]
    CWD[f"make-spawn{_n}"] = f"{T}/mk"
for _m in (4, 5):
    CMDS[f"mt{_m}"] = ["/work/wt/prepare-gap/mergetest", str(_m)]
