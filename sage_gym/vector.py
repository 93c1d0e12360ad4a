"""SageVectorEnv: many SageDialogue dialogues stepped concurrently on one event loop.

A simulator call is network-bound: it waits on an LLM for most of its time. So a batch of N
dialogues should have its N calls in flight together and take about one call's latency per
step, not N of them. `SageVectorEnv` owns N `SageDialogueEnv`s that share one simulator (one
connection pool) and awaits their `astep`s together with `asyncio.gather`, at most
`max_concurrency` at a time. No processes, no copies of the environment state.

    import gymnasium as gym
    import sage_gym

    envs = gym.make_vec("SageDialogue-v0", num_envs=8, autoreset_mode="disabled", max_turns=8)
    observations, infos = envs.reset(seed=0, options={"group_size": 4})  # 2 scenarios x 4 copies
    observations, rewards, terminations, truncations, infos = envs.step(["I'm listening."] * 8)

| | |
|---|---|
| Observation space | `Tuple` of N `UnicodeText`: each dialogue's latest user message, a `tuple[str, ...]` |
| Action space | `Tuple` of N `UnicodeText`: a sequence of N agent messages (an action a sub-env ignores may be `None`, see below) |
| Rewards | `np.ndarray[float64]` of shape (N,), each sub-env's reward (see `SageDialogueEnv`) |
| Terminations, truncations | `np.ndarray[bool]` of shape (N,) |
| Infos | Gymnasium's vector convention: `infos[key]` is an array over the N sub-envs and `infos["_" + key]` a bool mask of the sub-envs that reported it. Keys: those of `SageDialogueEnv` (`emotion`, `change`, `bucket`, `grade`, `thoughts`, `turn`, `outcome`, `history`, `scenario_id`, `thinking`, `analysis`) plus `error` (`None`, or the message of the simulator failure that ended the dialogue) |

## Reset

`reset(seed=None | int | list[int | None], options=None | {...})`. An int seed gives sub-env `i`
the seed `seed + i` (Gymnasium's convention), so the same seed gives the same batch and sub-env
`i` behaves exactly like a single `SageDialogueEnv` reset with `seed + i`. Options:

| option | meaning |
|---|---|
| `group_size` | G (default 1), must divide N. Sub-envs `[k*G, (k+1)*G)` form group k: copies of one scenario that start from the same first message (GRPO groups). Their seeds still differ, so the copies are independent afterwards. |
| `scenario_ids` | one id per group (N // G ids) or one per sub-env (N ids; equal within a group). A `None` entry, or no list at all, means the group's scenario is the one its first sub-env draws from its own seed. |
| `reset_mask` | a bool `np.ndarray` of shape (N,): reset only those sub-envs (Gymnasium's option); the others keep their dialogues and observations. Needs `group_size` 1; `scenario_ids` then has N entries, entries for unmasked sub-envs are ignored. |

## Autoreset

`autoreset_mode` is `AutoresetMode.NEXT_STEP` (default, as Gymnasium defines it) or
`AutoresetMode.DISABLED` (also the strings `"next_step"` and `"disabled"`).

- `NEXT_STEP`: the step after a sub-env's terminal step resets that sub-env and ignores its
  action (which may be `None`); that step returns the new first message, reward 0 and both flags
  False. The new dialogue's scenario is drawn by the sub-env's own generator, so groups are not
  kept across autoresets: a GRPO learner wants `DISABLED`.
- `DISABLED`: a finished dialogue stays finished until the next `reset()`. Stepping it is a
  no-op: its action is ignored (and may be `None`), and it returns its last observation, reward
  0, its terminated/truncated flags as they were, and its last info. `done` says which sub-envs
  have finished since the last reset.

## Failures

A step never loses the dialogues that did advance: either it returns every sub-env's result, or
it raises before anything changed.

- **A sub-env that fails.** When one sub-env's step raises (a `SimulatorError` after the
  simulator's own retries and deadline, or any other exception: a bug, an invalid reaction), that
  dialogue ends: outcome `"error"`, `terminated=True`, reward 0, `infos["error"]` holds
  `"<ExceptionType>: <message>"`, and the transcript (if recorded) says so. The others go on, and
  the step returns all N results. A learner must drop such a dialogue, not score it zero (its
  reward 0 is not a score). Exceptions that are not a `SimulatorError` are also logged with their
  traceback on the `sage_gym.vector` logger.
- **A restart that fails** (a `NEXT_STEP` autoreset whose simulator cannot open the dialogue):
  the sub-env stays finished (`terminated=True`, outcome `"error"`, `infos["error"]` set, its last
  observation) and the next step tries the restart again.
- **A reset that fails** propagates: there is no dialogue to mark. The sub-envs it was resetting
  count as never reset until a `reset()` succeeds.
- **Bad input** (wrong number of actions, a non-string action, one longer than the action space
  or not encodable as UTF-8, stepping before `reset`, a bad seed or reset option) raises before
  any simulator call runs, and changes nothing.
- `KeyboardInterrupt` and cancellation propagate (after the other sub-envs' results are applied).

## Concurrency

Every step's simulator calls are awaited together, at most `max_concurrency` at a time. An LLM
simulator may bound its own calls too (`OpenAISimulator(max_concurrency=32)`); when the vector env
builds it from the name `"openai"` it passes its own `max_concurrency` on unless
`simulator_kwargs` sets one. The synchronous `reset`/`step` run on sage_gym's background event
loop (so they work inside a notebook that has its own loop); `areset`/`astep` can be awaited
directly. `close()` closes the simulator's connections if the vector env built it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

from sage_gym._loop import run_sync
from sage_gym.env import SageDialogueEnv
from sage_gym.redaction import RedactedSpec
from sage_gym.scenarios import Scenario, ScenarioSet, resolve_scenarios
from sage_gym.simulators import Simulator, SimulatorError, make_simulator

AUTORESET_NAMES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "disabled": AutoresetMode.DISABLED,
}
RESET_OPTIONS = ("group_size", "scenario_ids", "reset_mask")
log = logging.getLogger(__name__)


def unbatch_infos(infos: Mapping[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Vector infos (`key -> array`, `_key -> mask`) as one dict per sub-env, nested dicts included."""
    per_env: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, values in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue
        mask = infos.get(f"_{key}", np.ones(num_envs, dtype=np.bool_))
        if isinstance(values, Mapping):  # a nested info dict, batched the same way
            nested = unbatch_infos(values, num_envs)
            for i in range(num_envs):
                if mask[i]:
                    per_env[i][key] = nested[i]
            continue
        for i in range(num_envs):
            if mask[i]:
                value = values[i]
                per_env[i][key] = value.item() if isinstance(value, np.generic) else value
    return per_env


def parse_autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """`AutoresetMode.NEXT_STEP` / `DISABLED`, or their names ("next_step", "disabled") or values."""
    if isinstance(mode, str):
        key = mode.strip().lower().replace("-", "_")
        by_value = {m.value.lower(): m for m in AutoresetMode}
        mode = AUTORESET_NAMES.get(key) or by_value.get(key.replace("_", "")) or mode
    if not isinstance(mode, AutoresetMode) or mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
        raise ValueError(f"autoreset_mode must be AutoresetMode.NEXT_STEP or DISABLED (or 'next_step' / 'disabled'), got {mode!r}")
    return mode


class SageVectorEnv(gym.vector.VectorEnv):
    __doc__ = __doc__
    spec = RedactedSpec()  # gym.make_vec records the kwargs here: keep API keys out of str(env.spec)

    def __init__(
        self,
        num_envs: int,
        scenarios: str | Path | ScenarioSet | Iterable[Scenario] = "train",
        simulator: str | Simulator = "builtin",
        simulator_kwargs: Mapping[str, Any] | None = None,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_concurrency: int = 64,
        **env_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, (int, np.integer)) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        self.num_envs = int(num_envs)
        self.max_concurrency = int(max_concurrency)
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)

        # Load the scenarios and build the simulator once: every sub-env shares them, so an LLM
        # simulator keeps one connection pool for the whole batch.
        self.scenarios = resolve_scenarios(scenarios)
        simulator_kwargs = dict(simulator_kwargs or {})
        if simulator == "openai":
            # its own limit on calls in flight would otherwise cap the batch below max_concurrency
            simulator_kwargs.setdefault("max_concurrency", self.max_concurrency)
        self.simulator = make_simulator(simulator, **simulator_kwargs)
        self._owns_simulator = isinstance(simulator, str)  # made here, so closed here
        self.envs = [SageDialogueEnv(self.scenarios, self.simulator, **env_kwargs) for _ in range(self.num_envs)]

        self.render_mode = self.envs[0].render_mode
        self.metadata = {"autoreset_mode": self.autoreset_mode, "render_modes": list(SageDialogueEnv.metadata["render_modes"])}
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = gym.spaces.Tuple([self.single_observation_space] * self.num_envs)
        self.action_space = gym.spaces.Tuple([self.single_action_space] * self.num_envs)

        n = self.num_envs
        self._observations: list[str | None] = [None] * n
        self._infos: list[dict[str, Any] | None] = [None] * n
        self._terminations = np.zeros(n, dtype=np.bool_)
        self._truncations = np.zeros(n, dtype=np.bool_)
        self._finished = np.zeros(n, dtype=np.bool_)  # ended since its last reset
        self._started = np.zeros(n, dtype=np.bool_)  # reset at least once

    # ------------------------------------------------------------------ public API

    @property
    def done(self) -> np.ndarray:
        """Bool (N,): the sub-envs whose dialogue has ended since their last reset."""
        return np.copy(self._finished)

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: Mapping[str, Any] | None = None) -> tuple[tuple[str, ...], dict[str, Any]]:
        return run_sync(self.areset(seed=seed, options=options))

    def step(self, actions: Sequence[str | None]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        return run_sync(self.astep(actions))

    async def areset(
        self, *, seed: int | Sequence[int | None] | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Async `reset`: start the (masked) sub-envs' dialogues, all awaited together."""
        seeds = self._per_env_seeds(seed)
        mask, scenario_ids, group_size = self._reset_plan(options)
        indices = [i for i in range(self.num_envs) if mask[i]]

        # Round 1: every sub-env whose scenario is known, and each group's first sub-env, which
        # draws the group's scenario from its own seed. Round 2: the rest of those groups copy it.
        first_round = [i for i in indices if scenario_ids[i] is not None or i % group_size == 0]
        leaders = set(first_round)
        second_round = [i for i in indices if i not in leaders]

        def start(i: int, scenario_id: str | None) -> Awaitable[tuple[str, dict[str, Any]]]:
            options = {"scenario_id": scenario_id} if scenario_id is not None else None
            return self.envs[i].areset(seed=seeds[i], options=options)

        # Until every start succeeds the reset sub-envs count as never reset, so a failed reset
        # cannot leave a half-started batch that step() would run.
        self._started[mask] = False
        results = await self._gather([start(i, scenario_ids[i]) for i in first_round])
        self._raise_first(results)
        for i in second_round:
            scenario = self.envs[i - i % group_size].scenario
            assert scenario is not None
            scenario_ids[i] = scenario.id
        later = await self._gather([start(i, scenario_ids[i]) for i in second_round])
        self._raise_first(later)

        started = dict(zip(first_round + second_round, list(results) + list(later), strict=True))
        infos: dict[str, Any] = {}
        for i in indices:
            observation, info = started[i]
            self._begin(i, observation, info)
            infos = self._add_info(infos, self._infos[i] or {}, i)
        return tuple(self._observations), infos  # type: ignore[arg-type]

    async def astep(self, actions: Sequence[str | None]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Async `step`: all sub-envs' simulator calls awaited together."""
        running = self._checked_actions(actions)
        restart = [i for i in range(self.num_envs) if self._finished[i] and self.autoreset_mode == AutoresetMode.NEXT_STEP]
        stepping = list(running)
        restarting = set(restart)

        calls: list[Awaitable[Any]] = [self.envs[i].areset() for i in restart]
        calls += [self.envs[i].astep(action) for i, action in running.items()]
        results = await self._gather(calls)

        rewards = np.zeros(self.num_envs, dtype=np.float64)
        interrupted: BaseException | None = None
        for i, result in zip(restart + stepping, results, strict=True):
            if isinstance(result, Exception):
                if not isinstance(result, SimulatorError):
                    log.error("sub-env %d failed; its dialogue ends with outcome 'error'", i, exc_info=result)
                if i in restarting:
                    self._restart_failed(i, result)
                else:
                    self._end_with_error(i, result)
            elif isinstance(result, BaseException):  # KeyboardInterrupt, cancellation: apply the others first
                interrupted = interrupted or result
            elif i in restarting:
                self._begin(i, *result)
            else:
                self._observations[i], rewards[i], terminated, truncated, info = result
                self._terminations[i], self._truncations[i] = terminated, truncated
                self._infos[i] = {**info, "error": None}
                self._finished[i] = terminated or truncated
        if interrupted is not None:
            raise interrupted

        infos: dict[str, Any] = {}
        for i, info in enumerate(self._infos):
            infos = self._add_info(infos, info or {}, i)
        return tuple(self._observations), rewards, self._terminations.copy(), self._truncations.copy(), infos  # type: ignore[arg-type]

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode is None:
            return None
        # every sub-env has this env's render mode, "ansi" (the only one): each frame is text
        return cast(tuple[str, ...], tuple(env.render() for env in self.envs))

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
        # A simulator built from a name belongs to this env: close its connection pool. One passed
        # in as an instance belongs to the caller, who may share it with other environments.
        aclose = getattr(self.simulator, "aclose", None)
        if self._owns_simulator and aclose is not None:
            run_sync(aclose())

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method `name` of every sub-env (or read attribute `name` if it is not callable)."""
        results = []
        for env in self.envs:
            attribute = getattr(env, name)
            results.append(attribute(*args, **kwargs) if callable(attribute) else attribute)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute `name` of every sub-env."""
        return tuple(getattr(env, name) for env in self.envs)

    def set_attr(self, name: str, values: Any | Sequence[Any]) -> None:
        """Set attribute `name` of every sub-env: one value for all, or a list/tuple of N values."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr needs one value or {self.num_envs} values, got {len(values)}")
        for env, value in zip(self.envs, values, strict=True):
            setattr(env, name, value)

    # ------------------------------------------------------------------ helpers

    async def _gather(self, coroutines: Sequence[Awaitable[Any]]) -> list[Any]:
        """Await all, at most `max_concurrency` at once; exceptions are returned, not raised."""
        # Created per call: a semaphore binds to the loop it is first used on, and areset/astep
        # may be awaited on the caller's own loop as well as on the background one.
        limit = asyncio.Semaphore(self.max_concurrency)

        async def bounded(coroutine: Awaitable[Any]) -> Any:
            async with limit:
                return await coroutine

        return await asyncio.gather(*(bounded(c) for c in coroutines), return_exceptions=True)

    @staticmethod
    def _raise_first(results: Sequence[Any]) -> None:
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _begin(self, i: int, observation: str, info: dict[str, Any]) -> None:
        self._observations[i] = observation
        self._infos[i] = {**info, "error": None}
        self._terminations[i] = self._truncations[i] = self._finished[i] = False
        self._started[i] = True

    def _end_with_error(self, i: int, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        try:
            info = self.envs[i].mark_error(error)  # the sub-env records the failure in its transcript
        except Exception as recording:  # e.g. the transcript cannot be written: still end the dialogue
            log.error("sub-env %d: recording its failure failed", i, exc_info=recording)
            info = {**(self._infos[i] or {}), "outcome": "error", "error": f"{message} (and recording it failed: {type(recording).__name__}: {recording})"}
        self._infos[i] = {**info, "error": info.get("error") or message}
        self._terminations[i], self._truncations[i], self._finished[i] = True, False, True

    def _restart_failed(self, i: int, error: Exception) -> None:
        """A NEXT_STEP autoreset failed: the sub-env stays finished and retries its restart next step."""
        self._infos[i] = {**(self._infos[i] or {}), "outcome": "error", "error": f"{type(error).__name__}: {error}"}
        self._terminations[i], self._truncations[i], self._finished[i] = True, False, True

    def _per_env_seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            if seed < 0:
                raise ValueError(f"seed must be non-negative (NumPy's generators refuse negative seeds), got {seed!r}")
            return [int(seed) + i for i in range(self.num_envs)]
        if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence | np.ndarray):
            raise TypeError(f"seed must be None, an int or a list of {self.num_envs} ints, got {type(seed).__name__}")
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"seed has {len(seeds)} entries but num_envs is {self.num_envs}")
        for s in seeds:
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer))):
                raise TypeError(f"each seed must be an int or None, got {s!r}")
            if s is not None and s < 0:
                raise ValueError(f"seeds must be non-negative (NumPy's generators refuse negative seeds), got {s!r}")
        return [None if s is None else int(s) for s in seeds]

    def _reset_plan(self, options: Mapping[str, Any] | None) -> tuple[np.ndarray, list[str | None], int]:
        """(mask of sub-envs to reset, scenario id or None per sub-env, group size), all validated."""
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected some of {list(RESET_OPTIONS)}")
        group_size = self._checked_group_size(options.get("group_size", 1))
        mask = self._checked_reset_mask(options.get("reset_mask"), group_size)
        scenario_ids = self._checked_scenario_ids(options.get("scenario_ids"), group_size)
        return mask, scenario_ids, group_size

    def _checked_group_size(self, group_size: Any) -> int:
        if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
            raise ValueError(f"options['group_size'] must be a positive integer, got {group_size!r}")
        if self.num_envs % group_size:
            raise ValueError(f"num_envs={self.num_envs} is not a multiple of options['group_size']={group_size}")
        return int(group_size)

    def _checked_reset_mask(self, mask: Any, group_size: int) -> np.ndarray:
        """The sub-envs to reset: all of them without a mask."""
        n = self.num_envs
        if mask is None:
            return np.ones(n, dtype=np.bool_)
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (n,):
            raise TypeError(f"options['reset_mask'] must be a bool np.ndarray of shape ({n},), got {mask!r}")
        if not mask.any():
            raise ValueError("options['reset_mask'] resets nothing: it has no True entry")
        if group_size != 1:
            raise ValueError("options['reset_mask'] cannot be combined with group_size > 1: reset whole groups with reset()")
        if not (self._started | mask).all():
            raise ResetNeeded(f"sub-envs {np.flatnonzero(~(self._started | mask)).tolist()} were never reset; call reset() without a mask first")
        return mask

    def _checked_scenario_ids(self, ids: Any, group_size: int) -> list[str | None]:
        """One scenario id (or None: drawn from the seed) per sub-env, from one per group or one per sub-env."""
        n = self.num_envs
        if ids is None:
            return [None] * n
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence | np.ndarray):
            raise TypeError(f"options['scenario_ids'] must be a list of scenario ids, got {type(ids).__name__}")
        given: list[str | None] = list(ids)
        groups = n // group_size
        if len(given) not in (groups, n):
            raise ValueError(f"options['scenario_ids'] needs {groups} ids (one per group) or {n} (one per sub-env), got {len(given)}")
        for sid in given:
            if sid is not None and not isinstance(sid, str):
                raise TypeError(f"scenario ids must be strings (or None), got {sid!r}")
            if sid is not None and sid not in self.scenarios:
                self.scenarios.get(sid)  # raises KeyError naming the id and similar ones
        if len(given) == groups:
            return [given[i // group_size] for i in range(n)]
        for k in range(groups):
            members = set(given[k * group_size : (k + 1) * group_size])
            if len(members) > 1:
                raise ValueError(
                    f"options['scenario_ids'] gives group {k} (sub-envs {k * group_size}..{(k + 1) * group_size - 1}) "
                    f"different scenarios {sorted(map(str, members))}"
                )
        return given

    def _checked_actions(self, actions: Sequence[str | None]) -> dict[int, str]:
        """The actions of the sub-envs still in their dialogue, by index, validated; raises before any call."""
        if isinstance(actions, (str, bytes)) or not isinstance(actions, Sequence | np.ndarray):
            raise TypeError(f"actions must be a sequence of {self.num_envs} strings (one per sub-env), got {type(actions).__name__}")
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions (one per sub-env), got {len(actions)}")
        if not self._started.all():
            raise ResetNeeded(f"sub-envs {np.flatnonzero(~self._started).tolist()} were never reset; call reset() before step()")
        running: dict[int, str] = {}
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            if self._finished[i]:
                continue  # ignored: reset (NEXT_STEP) or a no-op (DISABLED)
            try:
                running[i] = env._check_action(action)  # the single env's own validation, so both agree
            except (TypeError, ValueError) as error:
                error.args = (f"action {i}: {error}",)  # name the sub-env; keep the exception's type
                raise
        return running
