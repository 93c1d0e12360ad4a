"""Whether a model is sharded by FSDP2, and its parameters gathered for a block of forward passes.

Sampling (here and in the rollout engines) reads a policy that the trainer may have sharded over
ranks; these two helpers are all it needs of that, so the policy does not depend on the learner's
distributed setup (`agents.learn.distributed` wraps and shards; it imports these from here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


def is_sharded(module: nn.Module) -> bool:
    # torch.distributed is imported only when asked: a torch build may come without it
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


@contextlib.contextmanager
def gathered(module: nn.Module) -> Iterator[None]:
    """Under FSDP2: all parameters gathered for the block, and kept so through every forward.

    Sampling runs a different number of forward passes on each rank (dialogues stop at different
    times); with the parameters gathered once, those forwards need no collective.
    """
    if not is_sharded(module):
        yield
        return
    sharded = [m for m in module.modules() if is_sharded(m)]  # the root and its blocks
    module.set_reshard_after_forward(False, recurse=True)
    for part in sharded:
        part.unshard()
    try:
        yield
    finally:
        module.set_reshard_after_forward(True, recurse=True)
        for part in sharded:
            part.reshard()
