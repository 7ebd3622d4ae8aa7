"""Live-kernel measurement: perf tracepoint counts and times (``perf``, ``run``, ``host``),
the micro workloads (``micro``, C sources in ``workloads/``), the kernel build (``kbuild``)
and the cost of an allocation (``cost``)."""
