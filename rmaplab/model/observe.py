"""Measures of the rmap structure at one moment: chains, hierarchy depth, rmap-walk cost.

The rmap-walk cost of a page is what rmap_walk_anon() visits: the AVCs in the
interval tree of ``page->mapping`` whose VMA covers the page's index.  Longer
chains and shared anon_vmas (the scalability concern of 5beb49305251) show up as
more AVCs visited per page, most of them VMAs where the page is not mapped.
"""

from __future__ import annotations

from rmaplab.model.structs import AnonVma, Mm


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
