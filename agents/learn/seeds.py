"""Named seed streams: every random draw of a run comes from (run seed, step, stream, ...).

A stream is a purpose. Deriving every draw from the run seed, the step and its purpose (never
from a generator advanced by earlier draws) is what makes a run resumable from any checkpoint
and independent of the number of ranks: every rank derives the same global plans, and each
dialogue's turns sample from their own streams (docs/design.md, "Invariants").

The numbers are part of the run's identity: changing one changes every run's samples.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """The purposes a seed is drawn for (the values are fixed; 6 is retired)."""

    SCENARIOS = 1  # which scenarios a step plays
    SAMPLING = 2  # the policy's token draws (then one sub-stream per dialogue and turn)
    ENV_RESET = 3  # the simulated users' resets (sub-env i gets this + its global index)
    MINIBATCHES = 4  # how a step's dialogues are shuffled into mini-batches
    TORCH = 5  # torch's global RNG at the start of a step (dropout), per rank
    CRITIC_INIT = 7  # a new value head's initial weights (step 0)


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (run seed, step, purpose...), stable across runs and platforms."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def stream_seed(run_seed: int, step: int, stream: Stream, *more: int) -> int:
    """The seed of `stream` at `step` (steps count from 1; 0 is set-up), refined by `more` (a rank...)."""
    return derive_seed(run_seed, step, int(stream), *more)


def turn_seed(sampling_seed: int, dialogue: int, turn: int) -> int:
    """The seed of turn `turn` of global dialogue `dialogue`, under a step's SAMPLING seed."""
    return derive_seed(sampling_seed, dialogue, turn)
