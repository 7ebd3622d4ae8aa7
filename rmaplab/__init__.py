"""rmaplab: a reproducible study of anon_vma reuse at fork in the Linux kernel.

Subpackages: ``model`` (mm/rmap.c as executable Python), ``timings`` (timing-file
loaders), ``stats`` (small-n A/B inference), ``measure`` (live-kernel counts through
perf tracepoints), ``traces`` (event-trace I/O).  The command line is ``rmaplab``.
"""

__version__ = "0.1.0"
