from modularity.showing.cli import main

raise SystemExit(main())
