from rmaplab.cli import main

raise SystemExit(main())
