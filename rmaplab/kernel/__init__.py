"""UML policy kernels: linux-source-6.12 with the project's patches, built and booted here.

One User-Mode Linux kernel carries every anon_vma reuse policy of
rmaplab.model.policies, switchable at boot (``rmap.reuse_policy=``) and at run time
(``/sys/module/rmap/parameters/reuse_policy``), and counts anon_vma, anon_vma_chain
and VMA allocations by call site in ``/proc/rmaplab_counters``.

    source   the Debian source package, unpacked into the cache; host tools (apt)
    patches/ the patch series (git format-patch files), series applies it
    config   defconfig + uml.config
    build    the build steps, the cache of built kernels
    guest/   the guest's root directory: init, the job runner (C), static busybox
    run      boot and run jobs, one policy each, in one boot; the counts
    kbuild   the tinyconfig kernel build inside the guest, under every policy
"""
