from agents.view.cli import main

raise SystemExit(main())
