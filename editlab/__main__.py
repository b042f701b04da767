from editlab.cli import main

raise SystemExit(main())
