from modularity.cli import main

raise SystemExit(main())
