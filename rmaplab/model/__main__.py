"""``python -m rmaplab.model build|clean|status``: the compiled model (rmaplab.model.fastpath)."""

from rmaplab.model.fastpath import main

raise SystemExit(main())
