"""Stable-Baselines3 views of SageDialogue for agents with numeric observations and discrete actions.

SB3's algorithms want an observation vector and a discrete (or box) action, not text. A
`NumericDialogue` says how to get them: an *encoder* turns the user's message and the step's
info into a vector, a *decoder* turns an action index (and the dialogue it answers) into the
agent's message. Two views use it:

| view | what it is |
|---|---|
| `NumericDialogueEnv(env, numeric)` | a `gymnasium.Wrapper` over one `SageDialogueEnv` (passes SB3's `check_env`) |
| `SB3VecEnv(venv, numeric)` | a `stable_baselines3` `VecEnv` over a `SageVectorEnv`: every step's simulator calls run concurrently |

    from sage_gym.sb3 import NumericDialogue, make_sb3_vec_env
    numeric = NumericDialogue(observation_space, action_space, encode=my_features, decode=lambda i, info: my_templates[i])
    venv = make_sb3_vec_env(16, numeric, max_turns=8)
    model = PPO("MlpPolicy", venv, n_steps=32).learn(10_000)

`SB3VecEnv` follows SB3's conventions: `reset()` returns observations only (and fills
`reset_infos`), `step_async`/`step_wait`, a finished dialogue is reset in the same step with its
last observation in `infos[i]["terminal_observation"]` and `infos[i]["TimeLimit.truncated"]` set
when the turn limit (not the user) ended it; `seed()` and `set_options()` apply to the next
`reset()` (per-env options may hold a `"scenario_id"`). `get_attr`, `set_attr`, `env_method` and
`env_is_wrapped` reach the `SageDialogueEnv`s. A dialogue that ended because the simulator
failed is done with `infos[i]["outcome"] == "error"`; filter those out of any statistics.

Importing this module imports stable-baselines3 (and so torch), installed by the `sb3` extra
(`pip install 'sage-gym[sb3]'`); `import sage_gym` does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3.common.env_util import is_wrapped
    from stable_baselines3.common.vec_env import VecEnv
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
except ImportError as err:  # the core install has no stable-baselines3 (and so no torch)
    raise ImportError(f"sage_gym.sb3 needs stable-baselines3: pip install 'sage-gym[sb3]' ({err})") from err

from sage_gym.env import SageDialogueEnv
from sage_gym.vector import SageVectorEnv, unbatch_infos


@dataclass(frozen=True)
class NumericDialogue:
    """How a numeric agent sees a dialogue and speaks in it.

    `encode(text, info)` gets the user's latest message and the single-env info of that step
    (`emotion`, `turn`, `history`, ...; see `SageDialogueEnv`) and returns an array in
    `observation_space` (a `Box`). `decode(index, info)` returns the agent's message for an action
    index in `action_space` (a `Discrete`), given the info of the observation the action answers
    (so a template can be filled with the user's own words from `info["history"]`).
    """

    observation_space: spaces.Box
    action_space: spaces.Discrete
    encode: Callable[[str, Mapping[str, Any]], np.ndarray]
    decode: Callable[[int, Mapping[str, Any]], str]

    def __post_init__(self) -> None:
        if not isinstance(self.observation_space, spaces.Box):
            raise TypeError(f"observation_space must be a gymnasium.spaces.Box, got {type(self.observation_space).__name__}")
        if not isinstance(self.action_space, spaces.Discrete):
            raise TypeError(f"action_space must be a gymnasium.spaces.Discrete, got {type(self.action_space).__name__}")
        if not (callable(self.encode) and callable(self.decode)):
            raise TypeError("encode and decode must be callables")

    def observe(self, text: str, info: Mapping[str, Any]) -> np.ndarray:
        """The encoded observation, checked against `observation_space`."""
        observation = np.asarray(self.encode(text, info), dtype=self.observation_space.dtype)
        if not self.observation_space.contains(observation):
            raise ValueError(
                f"the encoder returned an array of shape {observation.shape} that is not in {self.observation_space} "
                f"(values {np.array2string(observation, threshold=8)})"
            )
        return observation

    def act(self, action: Any, info: Mapping[str, Any]) -> str:
        """The agent's message for an action index, checked against `action_space`."""
        given = np.asarray(action)
        if given.size != 1 or not np.issubdtype(given.dtype, np.integer):
            raise TypeError(f"a discrete action must be one integer, got {action!r}")
        index = int(given.reshape(()))
        if not self.action_space.contains(index):
            raise ValueError(f"action {index} is outside {self.action_space}")
        text = self.decode(index, info)
        if not isinstance(text, str):
            raise TypeError(f"the decoder must return the agent's message as a str, got {type(text).__name__} for action {index}")
        return text


class NumericDialogueEnv(gym.Wrapper):
    """One dialogue with numeric observations and discrete actions (a single-env view for SB3)."""

    def __init__(self, env: gym.Env, numeric: NumericDialogue) -> None:
        super().__init__(env)
        self.numeric = numeric
        self._info: Mapping[str, Any] = {}  # the info of the current observation (what the decoder sees)
        self.observation_space = numeric.observation_space
        self.action_space = numeric.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        text, info = self.env.reset(seed=seed, options=options)
        self._info = info
        return self.numeric.observe(text, info), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        text, reward, terminated, truncated, info = self.env.step(self.numeric.act(action, self._info))
        self._info = info
        return self.numeric.observe(text, info), float(reward), terminated, truncated, info


class SB3VecEnv(VecEnv):
    """A `stable_baselines3` `VecEnv` over a `SageVectorEnv` in `DISABLED` autoreset mode.

    SB3 resets a finished episode in the same step; this view does it with the vector env's
    `reset_mask` option, so the restarts of one step also run concurrently.
    """

    def __init__(self, venv: SageVectorEnv, numeric: NumericDialogue) -> None:
        if not isinstance(venv, SageVectorEnv):
            raise TypeError(f"venv must be a SageVectorEnv, got {type(venv).__name__}")
        if venv.autoreset_mode != AutoresetMode.DISABLED:
            raise ValueError(
                f"SB3VecEnv needs a SageVectorEnv with autoreset_mode=DISABLED (SB3 resets finished episodes itself), got {venv.autoreset_mode}"
            )
        self.venv = venv
        self.numeric = numeric
        self._texts: list[str] | None = None
        self._infos: list[dict[str, Any]] = []  # per env, the info of its current observation (what the decoder sees)
        super().__init__(venv.num_envs, numeric.observation_space, numeric.action_space)

    # ------------------------------------------------------------------ reset and step

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._vector_options(self._options)
        texts, infos = self.venv.reset(seed=seeds, options=options)
        self.reset_infos = unbatch_infos(infos, self.num_envs)
        self._infos = list(self.reset_infos)
        self._reset_seeds()
        self._reset_options()
        return np.stack([self.numeric.observe(t, i) for t, i in zip(texts, self.reset_infos, strict=True)])

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got an array of shape {actions.shape}")
        if len(self._infos) != self.num_envs:
            raise RuntimeError("step_async() called before reset()")
        # decode now, so a bad action fails before any simulator call
        self._texts = [self.numeric.act(a, info) for a, info in zip(actions, self._infos, strict=True)]

    def step_wait(self) -> VecEnvStepReturn:
        if self._texts is None:
            raise RuntimeError("step_wait() called without step_async()")
        texts, self._texts = self._texts, None
        observations, rewards, terminations, truncations, infos = self.venv.step(texts)
        step_infos = unbatch_infos(infos, self.num_envs)
        encoded = [self.numeric.observe(o, i) for o, i in zip(observations, step_infos, strict=True)]
        dones = terminations | truncations
        for i, info in enumerate(step_infos):
            info["TimeLimit.truncated"] = bool(truncations[i] and not terminations[i])
            if dones[i]:
                info["terminal_observation"] = encoded[i]
        if dones.any():
            restarted, batched_infos = self.venv.reset(options={"reset_mask": dones})
            restart_infos = unbatch_infos(batched_infos, self.num_envs)
            for i in np.flatnonzero(dones).tolist():
                encoded[i] = self.numeric.observe(restarted[i], restart_infos[i])
                self.reset_infos[i] = restart_infos[i]
        self._infos = [self.reset_infos[i] if dones[i] else info for i, info in enumerate(step_infos)]
        return np.stack(encoded), rewards.astype(np.float32), dones, step_infos

    def close(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------ reaching the sub-envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(env, attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env in self._targets(indices):
            setattr(env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [is_wrapped(env, wrapper_class) for env in self._targets(indices)]

    def _targets(self, indices: VecEnvIndices) -> list[SageDialogueEnv]:
        return [self.venv.envs[i] for i in self._get_indices(indices)]

    def _vector_options(self, options: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """SB3's per-env reset options as the vector env's: only `scenario_id` is understood."""
        for i, env_options in enumerate(options):
            unknown = set(env_options) - {"scenario_id"}
            if unknown:
                raise ValueError(f"reset options for env {i} have unknown keys {sorted(unknown)}; only 'scenario_id' is supported")
        ids = [env_options.get("scenario_id") for env_options in options]
        return {"scenario_ids": ids} if any(sid is not None for sid in ids) else None


def make_sb3_vec_env(num_envs: int, numeric: NumericDialogue, **vector_kwargs: Any) -> SB3VecEnv:
    """An `SB3VecEnv` over a new `SageVectorEnv(num_envs, autoreset_mode="disabled", **vector_kwargs)`."""
    if "autoreset_mode" in vector_kwargs:
        raise ValueError("make_sb3_vec_env sets autoreset_mode itself (DISABLED: SB3 resets finished episodes)")
    return SB3VecEnv(SageVectorEnv(num_envs, autoreset_mode=AutoresetMode.DISABLED, **vector_kwargs), numeric)
