"""Lorenzo Stoakes' 2026 anon_vma rework, written as an rmaplab plug-in policy.

    rmaplab replay TRACE --policy examples/policies/lorenzo_rework.py:LorenzoRework

Sources: "[PATCH v3 0/9] mm: clean up anon_vma implementation" (Lorenzo Stoakes,
18 Jan 2026, linux-mm; taken into mm-unstable in January 2026) and mm/rmap.c of his
tree (git.kernel.org/pub/scm/linux/kernel/git/ljs/linux.git, read at 783e3bdb5f85).
The posted code was read.  Three patches of the series change what the kernel
allocates, or what it does while holding the anon_vma root lock:

* 2/9 "mm/rmap: eliminate partial anon_vma tear-down in anon_vma_fork()":
  anon_vma_fork() allocates the anon_vma and its AVC *before* anon_vma_clone(), and
  frees both when an anon_vma was reused ("An error arose or an existing anon_vma was
  reused, all done then.")                                  -> fork_allocates_first
* 3/9 "mm/rmap: skip unfaulted VMAs on anon_vma clone, unlink": anon_vma_clone()
  returns at once when src has no anon_vma, unlink_anon_vmas() too ("Unfaulted is a
  no-op."), and check_anon_vma_clone() warns when such a VMA has a chain
  (VM_WARN_ON_ONCE(!src->anon_vma && !list_empty(&src->anon_vma_chain)))
                                                            -> skip_unfaulted
* 8/9 "mm/rmap: allocate anon_vma_chain objects unlocked when possible":
  anon_vma_clone() allocates every AVC with GFP_KERNEL first, then takes the root lock
  once to insert them; 6.18 allocates all but the first with GFP_NOWAIT under the lock
  (dd34739c03f2)                                            -> avc_alloc_unlocked

The reuse rule is 6.18's: maybe_reuse_anon_vma() takes an anon_vma with no active VMA
and at most one child, so the class derives from V60.  The other patches (comments and
asserts, the root lock dance, anon_vma_merge() folded into its callers, functions made
internal, vma_is_attached(), fork-only logic split out) change no count the model keeps.
"""

from rmaplab.model.policies import V60


class LorenzoRework(V60):
    name = "ljs-2026"
    commit = "783e3bdb5f85"
    summary = ("Lorenzo Stoakes' anon_vma clean-up (v3, Jan 2026): allocate before clone in "
               "fork, skip unfaulted VMAs, AVCs allocated outside the root lock")
    fork_allocates_first = True
    skip_unfaulted = True
    avc_alloc_unlocked = True
