"""Deprecated: the simulator server moved to `sage_gym.servers.simulator_server`; this module re-exports it.

`python -m sage_gym.simulators.server` keeps working (with a DeprecationWarning).
"""

import warnings
from typing import Any

from sage_gym.servers import simulator_server as _moved
from sage_gym.servers.simulator_server import *  # noqa: F403
from sage_gym.servers.simulator_server import main

# run as a script, the warning is attributed to __main__ so that Python shows it by default
warnings.warn("sage_gym.simulators.server is deprecated; use sage_gym.servers.simulator_server instead", DeprecationWarning, stacklevel=1 if __name__ == "__main__" else 2)


def __getattr__(name: str) -> Any:  # the moved module's other names, private ones included
    return getattr(_moved, name)


if __name__ == "__main__":
    main()
