"""Tao Wang's ANON_VMA_LAZY (Honor, May 2026), written as an rmaplab plug-in policy.

    rmaplab replay TRACE --policy examples/policies/anon_vma_lazy.py:AnonVmaLazy

Sources: "[PATCH 0/15] mm: introduce ANON_VMA_LAZY for deferred anon_vma creation"
(Message-ID 20260527110147.17815-1-tao.wangtao@honor.com, 27 May 2026; LWN 1074859),
the commit message of 10/15 "mm: defer anon_vma creation with ANON_VMA_LAZY" with the
start of its diff (anon_vma_prepare() and __vmf_anon_prepare() call
vma_prepare_anon_vma_lazy() instead of __anon_vma_prepare()), and Tao's reply to Harry
Yoo of 2 June 2026 on fork, split and merge.  The mm/rmap.c part of the series (690
changed lines) could not be obtained here, so this models what those texts describe:

* A first write fault allocates nothing: no anon_vma, no AVC.  The VMA's pages are
  found through the VMA itself (folio->mapping points to the "ANON_VMA_LAZY root VMA",
  whose vm_start - vm_pgoff * PAGE_SIZE stays fixed across split and merge).
* fork: "ANON_VMA_LAZY VMAs are first upgraded to a regular anon_vma in the parent to
  establish the sharing topology" -- counted as the __anon_vma_prepare the fault skipped
  (one anon_vma, or a mergeable neighbour's, and one AVC per VMA that uses it);
  "Child VMAs are created as ANON_VMA_TREE_PARENT and do not allocate anon_vma" -- the
  child links to the parent's anon_vmas (anon_vma_clone's AVCs, as before) but its own
  anon_vma, where its COWed pages go, is deferred until the child forks in turn.
* The reuse rule at fork is 6.18's (V60).

The model keeps the 6.18 structure for a deferred anon_vma (so its invariants still
apply) and counts it, with its AVCs, only when a fork upgrades it.  Not modelled: the
vm_area_struct growth of the cover letter (+1.0% after boot, +0.2% after 24 apps),
merges ANON_VMA_LAZY may allow between VMAs whose eager anon_vmas would differ, and the
rmap-walk and locking changes of the other 14 patches.
"""

from rmaplab.model.policies import V60


class AnonVmaLazy(V60):
    name = "anon_vma_lazy"
    commit = "20260527110147.17815-1-tao.wangtao@honor.com"
    summary = ("ANON_VMA_LAZY (Tao Wang, May 2026): no anon_vma until a fork shares the VMA; "
               "fork children defer their own")

    def defer_anon_vma(self, vma, site):
        # vma_prepare_anon_vma_lazy() at the fault; ANON_VMA_TREE_PARENT at fork.
        return True

    def before_fork(self, kernel, vma, pvma):
        # "first upgraded to a regular anon_vma in the parent" (10/15)
        kernel.anon_vma_materialize(pvma.anon_vma)
