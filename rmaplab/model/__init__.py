"""An executable model of the Linux anonymous reverse map, one module per kernel file.

=============  ==================================================================
``structs``    anon_vma, anon_vma_chain, VMA, mm, page (include/linux/rmap.h, mm_types.h)
``policies``   the reuse rule at fork of each kernel era (the policy names)
``rmap``       mm/rmap.c: anon_vma_prepare/clone/fork, unlink_anon_vmas, anon_vma_merge
``vma``        mm/vma.c + mm/mmap.c: merge, split, mmap, munmap, mprotect, brk, madvise
``memory``     mm/memory.c: write faults, COW, exclusive reuse, zap
``fork``       kernel/fork.c dup_mmap, mm/mmap.c exit_mmap
``invariants`` the rules checked after every event
``observe``    chain lengths, hierarchy depth, rmap-walk cost
``machine``    processes and events: :class:`Kernel`
``base``       what the per-file parts of Kernel share
``fastpath``   the compiled build of these modules (README: the fast path)
=============  ==================================================================

The modules run compiled (mypyc) when ``make venv`` built them from the sources as they
are now (under ``build/fast/``), else interpreted; ``RMAPLAB_PURE=1`` forces the
interpreted sources, the reference (:mod:`rmaplab.model.fastpath`).
"""

from rmaplab.model import fastpath as _fastpath

# Compiled or interpreted is decided here, before the first model module is imported
# (select() never raises).  `python -m rmaplab.model build|clean|status` imports nothing
# else: those commands must work whatever state the compiled modules are in.
_fastpath.select()

if not _fastpath._running_as_main():
    from rmaplab.model.machine import Kernel, ReplayResult, Violation  # noqa: E402
    from rmaplab.model.policies import LIVE_POLICY, POLICIES, get_policy  # noqa: E402

__all__ = ["LIVE_POLICY", "POLICIES", "Kernel", "ReplayResult", "Violation", "get_policy"]
