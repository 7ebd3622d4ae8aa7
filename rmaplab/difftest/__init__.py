"""Random differential testing: the model against real kernels, exact counts.

``generate`` writes random valid programs (event traces), ``interpreter`` builds and
talks to the freestanding C interpreter (``interp.c``) that runs them on a kernel,
``backends`` run them on the host (perf) or the UML policy kernels, ``compare``
replays them in the model, ``shrink`` and ``cases`` reduce and keep disagreements,
``driver`` runs campaigns and records them.  ``rmaplab difftest`` is the command.
"""
