"""Deprecated: the environment server moved to `sage_gym.servers.env_server`; this module re-exports it.

`uvicorn sage_gym.serve:app` and `python -m sage_gym.serve` keep working (with a DeprecationWarning).
"""

import warnings
from typing import Any

from sage_gym.servers import env_server as _moved
from sage_gym.servers.env_server import *  # noqa: F403
from sage_gym.servers.env_server import main

# run as a script, the warning is attributed to __main__ so that Python shows it by default
warnings.warn("sage_gym.serve is deprecated; use sage_gym.servers.env_server instead", DeprecationWarning, stacklevel=1 if __name__ == "__main__" else 2)


def __getattr__(name: str) -> Any:  # `app` (built on first access) and the moved module's private names
    return getattr(_moved, name)


if __name__ == "__main__":
    main()
