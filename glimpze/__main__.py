from glimpze.cli import main

raise SystemExit(main())
