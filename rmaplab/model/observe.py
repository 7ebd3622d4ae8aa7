"""Measures of the rmap structure at one moment: chains, hierarchy depth, rmap-walk cost.

The rmap-walk cost of a page is what rmap_walk_anon() visits: the AVCs in the
interval tree of ``page->mapping`` whose VMA covers the page's index.  Longer
chains and shared anon_vmas (the scalability concern of 5beb49305251) show up as
more AVCs visited per page, most of them VMAs where the page is not mapped.
"""

from __future__ import annotations

import re

from rmaplab.model.structs import VM_EXEC, VM_READ, VM_WRITE, AnonVma, Mm


def depth(av: AnonVma) -> int:
    d = 0
    while av.parent is not av:
        av = av.parent
        d += 1
    return d


def snapshot(mms: dict[int, Mm]) -> dict[str, float]:
    chain_lengths = []
    anon_vmas: set[AnonVma] = set()
    pages = {}
    for mm in mms.values():
        for vma in mm.vmas:
            if vma.anon_vma is not None:
                chain_lengths.append(len(vma.chain))
            for avc in vma.chain:
                anon_vmas.add(avc.anon_vma)
        for page in mm.pages.values():
            pages[page.id] = page
    walk_avcs = []
    walk_hits = 0
    for page in pages.values():
        visited = 0
        for avc in page.mapping.avcs:
            vma = avc.vma
            if vma.pgoff <= page.index < vma.pgoff + vma.pages:
                visited += 1
        walk_avcs.append(visited)
        walk_hits += page.mapcount
    depths = [depth(av) for av in anon_vmas]
    n = len(walk_avcs)
    return {
        "processes": len(mms),
        "vmas_with_anon_vma": len(chain_lengths),
        "chain_len_mean": sum(chain_lengths) / len(chain_lengths) if chain_lengths else 0.0,
        "chain_len_max": max(chain_lengths, default=0),
        "anon_vmas_linked": len(anon_vmas),
        "depth_max": max(depths, default=0),
        "depth_mean": sum(depths) / len(depths) if depths else 0.0,
        "pages": n,
        "walk_avcs_mean": sum(walk_avcs) / n if n else 0.0,
        "walk_avcs_max": max(walk_avcs, default=0),
        # Of the AVCs a walk visits, how many lead to a VMA that maps the page.
        "walk_useful_share": walk_hits / sum(walk_avcs) if walk_avcs and sum(walk_avcs) else 0.0,
    }


def trace_prot(flags: int) -> str:
    """A VMA's access bits in the trace format's spelling ("", "r", "rw", "rx", "rwx")."""
    return "".join(c for c, bit in (("r", VM_READ), ("w", VM_WRITE), ("x", VM_EXEC))
                   if flags & bit)


def vma_state(mm: Mm) -> list[dict]:
    """The mm's VMAs in address order, as the kernel's VMA tests look at them.

    One dict per VMA: ``start``, ``end``, ``pgoff``, ``prot``, ``vma`` (the VMA object,
    so that callers can follow one VMA through merges, as the tests compare pointers),
    ``anon_vma`` (the object or None) and ``chain`` (the length of its anon_vma_chain).
    """
    return [{"start": v.start, "end": v.end, "pgoff": v.pgoff, "prot": trace_prot(v.flags),
             "vma": v, "anon_vma": v.anon_vma, "chain": len(v.chain)} for v in mm.vmas]


def anon_vma_names(mms: dict[int, Mm]) -> dict[AnonVma, str]:
    """AV1, AV2, ... for the anon_vmas linked now, in order of creation."""
    avs = {avc.anon_vma for mm in mms.values() for vma in mm.vmas for avc in vma.chain}
    avs |= {page.mapping for mm in mms.values() for page in mm.pages.values()}
    return {a: f"AV{i + 1}" for i, a in enumerate(sorted(avs, key=lambda a: a.id))}


def describe_mm(mm: Mm, names: dict[AnonVma, str]) -> list[dict]:
    """One row per VMA: range, prot, its anon_vma and its chain (oldest first)."""
    def name(av):
        return names.get(av, f"AV?{av.id}") if av is not None else "-"

    rows = []
    for vma in mm.vmas:
        prot = ("r" if vma.flags & VM_READ else "-") + ("w" if vma.flags & VM_WRITE else "-") \
            + ("x" if vma.flags & VM_EXEC else "-")
        rows.append({
            "pid": mm.pid, "start": hex(vma.start), "end": hex(vma.end), "prot": prot,
            "anon_vma": name(vma.anon_vma),
            "chain": "{" + ",".join(name(a.anon_vma) for a in vma.chain) + "}",
        })
    return rows


def hierarchy(mms: dict[int, Mm]) -> tuple[list[dict], list[dict]]:
    """Nodes (anon_vmas and the VMAs using them) and parent->child edges, for drawing.

    anon_vmas are named AV1, AV2... in order of creation; VMAs as "pid:start-page".
    """
    avs: set[AnonVma] = set()
    users: dict[AnonVma, list[str]] = {}
    for mm in mms.values():
        for vma in mm.vmas:
            for avc in vma.chain:
                avs.add(avc.anon_vma)
            if vma.anon_vma is not None:
                users.setdefault(vma.anon_vma, []).append(f"P{mm.pid}:{vma.start >> 12:x}")
    ordered = sorted(avs, key=lambda a: a.id)
    name = anon_vma_names(mms)
    nodes = [{"anon_vma": name[a], "parent": name.get(a.parent) if a.parent is not a else None,
              "depth": depth(a), "num_children": a.num_children,
              "num_active_vmas": a.num_active_vmas, "vmas": " ".join(sorted(users.get(a, [])))}
             for a in ordered]
    edges = [{"parent": n["parent"], "child": n["anon_vma"]} for n in nodes if n["parent"]]
    return nodes, edges


def walk(events: list[dict], policy: str) -> list[dict]:
    """Replay event by event; after each, the acting process's VMAs and any violation."""
    from rmaplab.model.machine import Kernel
    from rmaplab.traces import dumps

    kernel = Kernel(policy, check="full")
    rows = []
    for i, ev in enumerate(events):
        before = len(kernel.violations)
        kernel.apply(ev)
        names = anon_vma_names(kernel.mms)
        pid = ev.get("child", ev["pid"]) if ev["op"] == "fork" else ev["pid"]
        mm = kernel.mms.get(pid)
        state = "; ".join(f"{r['start'][-5:]} {r['anon_vma']} {r['chain']}"
                          for r in describe_mm(mm, names) if r["anon_vma"] != "-") if mm else "(exited)"
        new = kernel.violations[before:]
        by_id = {av.id: name for av, name in names.items()}
        detail = "; ".join(f"{v.invariant}: {v.detail}" for v in new)
        detail = re.sub(r"AV(\d+)", lambda m, ids=by_id: ids.get(int(m.group(1)), m.group(0)),
                        detail)
        detail = re.sub(r"VMA\d+\[(0x[0-9a-f]+)-(0x[0-9a-f]+) AV\S*\]", r"VMA[\1-\2]", detail)
        rows.append({"event": i, "what": dumps(ev), "process state after": state,
                     "violation": detail})
    return rows
