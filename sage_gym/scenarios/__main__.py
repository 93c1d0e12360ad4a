"""python -m sage_gym.scenarios {validate,import-sage,generate} ... (see sage_gym.scenarios.cli)."""

from sage_gym.scenarios.cli import main

raise SystemExit(main())
