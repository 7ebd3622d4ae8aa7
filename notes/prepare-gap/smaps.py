"""Condense an smaps dump: one line per VMA with Anonymous kB and VmFlags."""
import re, sys

def parse(text):
    text = text.split("=== smaps\n", 1)[-1].split("=== end\n", 1)[0]
    vmas = []
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) (\S+) (\S+) (\S+)\s*(.*)$", line)
        if m:
            vmas.append(dict(start=int(m[1], 16), end=int(m[2], 16), perm=m[3], off=m[4],
                             name=m[7], anon=0, flags=""))
        elif line.startswith("Anonymous:"):
            vmas[-1]["anon"] = int(line.split()[1])
        elif line.startswith("VmFlags:"):
            vmas[-1]["flags"] = line.split(":", 1)[1].strip()
    return vmas

def fmt(vmas):
    out = []
    for v in vmas:
        out.append(f"{v['start']:012x}-{v['end']:012x} {(v['end']-v['start'])//4096:7d}p {v['perm']} "
                   f"{v['off']} anon={v['anon']:6d}k {v['flags']:<40} {v['name']}")
    return "\n".join(out)

if __name__ == "__main__":
    print(fmt(parse(open(sys.argv[1]).read())))
