"""How close does a batch of dialogues come to one simulator latency per call?

    python benchmarks/vector_throughput.py                 # 64 dialogues x 8 turns, 50 ms per call (+ a 256-dialogue row)
    python benchmarks/vector_throughput.py --dialogues 16 --skip-async --extra-dialogues

A dialogue turn is two simulator calls (emotion update, then reply), made one after the other.
With every dialogue's calls in flight together, a batch of D dialogues x T turns can at best take

    ideal = T turns x 2 calls x latency          (0.8 s for 8 turns at 50 ms, whatever D is)

The simulator is the local OpenAI-compatible server (`sage_gym.servers.simulator_server`, the built-in
user over HTTP), run in a separate process with `latency_ms` added to every request, and reached
through `OpenAISimulator` (its `ChatClient`), as a remote LLM would be. One run prints, side by side:

| row | what runs |
|---|---|
| `SageVectorEnv` | D dialogues stepped concurrently on one event loop |
| `SageVectorEnv, N dialogues` | the same with N dialogues (`--extra-dialogues`, default 256): the ideal time is the same |
| `sequential loop` | one `SageDialogueEnv` stepped dialogue after dialogue (RLVER's rollout shape); it runs `--sequential-dialogues` dialogues and extrapolates linearly to D, since each dialogue costs the same |
| `AsyncVectorEnv` | Gymnasium's process-per-env vector env over D `SageDialogueEnv`s (forkserver workers) |
| `SageVectorEnv, in-process` | D dialogues against an in-process simulator that only sleeps `latency` per call: the vector env's own overhead, with no HTTP client or server cost at all |

Each row runs one untimed warm-up turn (clients, connections, lazy imports), then times `reset`
plus T steps. Every row runs twice: with the latency, and with 0 ms latency. The 0 ms run is the
simulator's own cost (the HTTP client's and the server's CPU time); the "cost excluded" ratio
subtracts it: (wall - wall at 0 ms) / ideal. Both are printed, because where that CPU work is
larger than the latency it hides the latency, and the difference is then noise. The CPU seconds
of the client process(es) and of the server during the timed rollout are printed too, and the
client's CPU milliseconds per simulator call (client CPU s / (D x T x 2)): everything the
environment and the HTTP client spend in the process that steps the dialogues.

Peak memory is the largest sum of resident set sizes seen while the rollout ran (sampled every
20 ms): the benchmark process, plus its worker processes for `AsyncVectorEnv` (not the server).
RSS counts pages that forked workers share once per worker; the unique set size (USS) after
the run is printed too.

Rules that let every dialogue run all T turns (so each row makes exactly D x T x 2 calls):
initial emotion `min(40, 99 - 10 (T - 1))`, no failure threshold, no avoidant users (they walk
out when upset); the agent sends the same T replies in every dialogue.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import psutil

from sage_gym.env import SageDialogueEnv
from sage_gym.scenarios import ScenarioSet, load_split
from sage_gym.simulators import BuiltinSimulator, Reaction, UserState
from sage_gym.simulators.base import emotion_bucket
from sage_gym.vector import SageVectorEnv

CALLS_PER_TURN = 2  # emotion update, then reply (OpenAISimulator's default two-call turn)
MODEL = "sage_gym.builtin"
REPLIES = (
    "That sounds exhausting. What has been the hardest part of it for you?",
    "It makes complete sense that you feel hurt by how that went.",
    "I can imagine how lonely it must feel to carry this on your own.",
    "What was going through your mind when it happened?",
    "Anyone in your place would feel the same way about that.",
    "It sounds like you have been holding a lot of this in for a long time.",
    "What would help you most right now, do you think?",
    "Thank you for telling me all of this; it took real courage.",
)


# ----------------------------------------------------------------------------------------------
# the setting


@dataclass(frozen=True)
class Setting:
    dialogues: int
    turns: int
    latency_ms: float
    seed: int
    scenarios: ScenarioSet

    @property
    def ideal_s(self) -> float:
        return self.turns * CALLS_PER_TURN * self.latency_ms / 1000.0

    def env_kwargs(self) -> dict:
        """SageDialogueEnv settings under which no dialogue ends before `turns` replies."""
        return {
            "scenarios": self.scenarios,
            "max_turns": self.turns,
            "initial_emotion": max(0, min(40, 99 - 10 * (self.turns - 1))),
            "failure_below": 0,
        }

    def reply(self, turn: int) -> str:
        return REPLIES[turn % len(REPLIES)]


def full_length_scenarios() -> ScenarioSet:
    scenarios = load_split("train")
    kept = [s for s in scenarios if s.character_type != "avoidant"]
    if not kept:
        sys.exit("every train scenario is avoidant (they may walk out early); the benchmark needs at least one that is not")
    return ScenarioSet(kept, name="train, not avoidant")


def simulator_kwargs(base_url: str) -> dict:
    return {"base_url": base_url, "model": MODEL, "timeout": 60.0}


# ----------------------------------------------------------------------------------------------
# the server, in its own process so that its CPU time does not compete with the client's GIL


def _serve(latency_ms: float, connection, stop) -> None:
    from sage_gym.servers.simulator_server import run_server_in_thread

    with run_server_in_thread(latency_ms=latency_ms) as base_url:
        connection.send(base_url)
        stop.wait()


@contextmanager
def server_process(latency_ms: float) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a local simulator server with `latency_ms` added per request."""
    context = mp.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    process = context.Process(target=_serve, args=(latency_ms, sender, stop), daemon=True)
    process.start()
    try:
        if not receiver.poll(60):
            raise RuntimeError("the simulator server did not start within 60 s")
        yield receiver.recv(), process.pid
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.terminate()


# ----------------------------------------------------------------------------------------------
# memory


class PeakMemory:
    """Samples the summed RSS of some processes in a background thread; keeps the peak."""

    def __init__(self, pids: Callable[[], Sequence[int]], interval_s: float = 0.02) -> None:
        self.pids, self.interval_s = pids, interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, total_memory(self.pids(), "rss"))
            if self._stop.wait(self.interval_s):
                return


def total_memory(pids: Sequence[int], kind: str) -> int:
    total = 0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            total += process.memory_full_info().uss if kind == "uss" else process.memory_info().rss
        except psutil.Error:  # a worker that already exited
            continue
    return total


# ----------------------------------------------------------------------------------------------
# the rollouts


@dataclass
class Result:
    wall_s: float
    dialogues: int  # dialogues actually run (each makes turns x CALLS_PER_TURN calls)
    cpu_s: float  # CPU time of this process (and its workers) during the timed rollout
    server_cpu_s: float = 0.0  # CPU time of the server process during the timed rollout
    peak_rss: int = 0
    uss: int = 0


def cpu_seconds(pids: Sequence[int | None]) -> float:
    """User + system CPU seconds of these processes so far (None: no process, 0)."""
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def check_complete(turns: np.ndarray, errors: Sequence, setting: Setting, who: str) -> None:
    if any(e is not None for e in errors):
        raise RuntimeError(f"{who}: a simulator call failed: {next(e for e in errors if e is not None)}")
    if not (np.asarray(turns) == setting.turns).all():
        raise RuntimeError(f"{who}: not every dialogue ran {setting.turns} turns: {np.asarray(turns).tolist()}")


def run_vector(setting: Setting, simulator, kwargs: dict | None = None, server_pid: int | None = None) -> Result:
    envs = SageVectorEnv(
        setting.dialogues, simulator=simulator, simulator_kwargs=kwargs, autoreset_mode="disabled", max_concurrency=setting.dialogues, **setting.env_kwargs()
    )
    me = os.getpid()
    envs.reset(seed=setting.seed + 10_000)  # warm-up turn: client, connections, lazy imports
    envs.step([setting.reply(0)] * setting.dialogues)
    with PeakMemory(lambda: [me]) as memory:
        cpu, server, start = cpu_seconds([me]), cpu_seconds([server_pid]), time.perf_counter()
        envs.reset(seed=setting.seed)
        for turn in range(setting.turns):
            _, _, _, _, infos = envs.step([setting.reply(turn)] * setting.dialogues)
        wall, cpu, server = time.perf_counter() - start, cpu_seconds([me]) - cpu, cpu_seconds([server_pid]) - server
    check_complete(infos["turn"], infos["error"], setting, "SageVectorEnv")
    envs.close()
    return Result(wall, setting.dialogues, cpu, server, memory.peak_bytes, total_memory([me], "uss"))


def run_sequential(setting: Setting, base_url: str, dialogues: int, server_pid: int | None = None) -> Result:
    env = SageDialogueEnv(simulator="openai", simulator_kwargs=simulator_kwargs(base_url), **setting.env_kwargs())
    env.reset(seed=setting.seed + 10_000)  # warm-up turn
    env.step(setting.reply(0))
    cpu, server, start = cpu_seconds([os.getpid()]), cpu_seconds([server_pid]), time.perf_counter()
    for i in range(dialogues):
        env.reset(seed=setting.seed + i)
        for turn in range(setting.turns):
            _, _, _, _, info = env.step(setting.reply(turn))
        check_complete(np.array([info["turn"]]), [None], setting, "sequential loop")
    wall, cpu, server = time.perf_counter() - start, cpu_seconds([os.getpid()]) - cpu, cpu_seconds([server_pid]) - server
    return Result(wall, dialogues, cpu, server)


def make_single_env(base_url: str, env_kwargs: dict) -> SageDialogueEnv:
    return SageDialogueEnv(simulator="openai", simulator_kwargs=simulator_kwargs(base_url), **env_kwargs)


def run_async_vector(setting: Setting, base_url: str, workers: int, server_pid: int | None = None) -> tuple[Result, float]:
    """(result, seconds to start the workers). The workers are forked from a forkserver that
    has already imported sage_gym, so they start fast and safely (this process has threads)."""
    start = time.perf_counter()
    envs = gym.vector.AsyncVectorEnv(
        [functools.partial(make_single_env, base_url, setting.env_kwargs())] * workers,
        shared_memory=False,  # text observations: Gymnasium's shared memory holds arrays only
        context="forkserver",
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    started = time.perf_counter() - start
    pids = [os.getpid()] + [p.pid for p in envs.processes]
    envs.reset(seed=setting.seed + 10_000)  # warm-up turn: each worker makes its client and imports
    envs.step(tuple([setting.reply(0)] * workers))
    with PeakMemory(lambda: pids) as memory:
        cpu, server, start = cpu_seconds(pids), cpu_seconds([server_pid]), time.perf_counter()
        envs.reset(seed=setting.seed)
        for turn in range(setting.turns):
            _, _, _, _, infos = envs.step(tuple([setting.reply(turn)] * workers))
        wall, cpu, server = time.perf_counter() - start, cpu_seconds(pids) - cpu, cpu_seconds([server_pid]) - server
    uss = total_memory(pids, "uss")
    errors = infos["error"] if "error" in infos else [None] * workers
    check_complete(infos["turn"], errors, setting, "AsyncVectorEnv")
    envs.close()
    return Result(wall, workers, cpu, server, memory.peak_bytes, uss), started


class SleepingSimulator(BuiltinSimulator):
    """A user who waits `calls` x `latency_s` per turn and then just says "Go on." (emotion unchanged).

    It costs nothing but time, so a rollout against it measures the vector env's own overhead.
    """

    kind = "sleeping"

    def __init__(self, latency_s: float, calls: int = CALLS_PER_TURN) -> None:
        self.latency_s, self.calls = latency_s, calls

    async def react(self, scenario, state, history, agent_reply):
        for _ in range(self.calls):
            await asyncio.sleep(self.latency_s)
        after = UserState(emotion=state.emotion, rules=state.rules, turn=state.turn + 1, seed=state.seed)
        return Reaction(state.emotion, 0, emotion_bucket(state.emotion), "", "Go on.", False, after)


# ----------------------------------------------------------------------------------------------
# the report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogues", type=int, default=64)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--sequential-dialogues", type=int, default=4, help="dialogues the sequential loop runs (extrapolated to --dialogues)")
    parser.add_argument("--async-workers", type=int, default=None, help="AsyncVectorEnv workers (default: --dialogues; extrapolated if fewer)")
    parser.add_argument("--skip-async", action="store_true", help="leave out AsyncVectorEnv")
    parser.add_argument("--extra-dialogues", type=int, nargs="*", default=[256], help="more SageVectorEnv rows over HTTP with these batch sizes (none: no extra rows)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.latency_ms <= 0:
        parser.error("--latency-ms must be positive: the ideal time is a multiple of it")

    mp.set_forkserver_preload(["sage_gym.env", "sage_gym.simulators.openai_sim"])
    scenarios = full_length_scenarios()
    setting = Setting(args.dialogues, args.turns, args.latency_ms, args.seed, scenarios)
    free = Setting(args.dialogues, args.turns, 0.0, args.seed, scenarios)
    workers = args.async_workers or args.dialogues

    print(
        f"{args.dialogues} dialogues x {args.turns} turns x {CALLS_PER_TURN} calls, {args.latency_ms:g} ms added per call; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; scenarios: {len(scenarios)} ({scenarios.name})",
        flush=True,
    )
    results: dict[str, dict[float, Result]] = {}
    async_start: dict[float, float] = {}
    for latency, current in ((args.latency_ms, setting), (0.0, free)):
        with server_process(latency) as (base_url, server_pid):
            print(f"  server at {latency:g} ms: SageVectorEnv ...", flush=True)
            results.setdefault("SageVectorEnv", {})[latency] = run_vector(current, "openai", simulator_kwargs(base_url), server_pid)
            for extra in args.extra_dialogues:
                print(f"  server at {latency:g} ms: SageVectorEnv, {extra} dialogues ...", flush=True)
                bigger = Setting(extra, current.turns, current.latency_ms, current.seed, current.scenarios)
                results.setdefault(f"SageVectorEnv, {extra} dialogues", {})[latency] = run_vector(bigger, "openai", simulator_kwargs(base_url), server_pid)
            print(f"  server at {latency:g} ms: sequential loop ({args.sequential_dialogues} dialogues) ...", flush=True)
            results.setdefault("sequential loop", {})[latency] = run_sequential(current, base_url, args.sequential_dialogues, server_pid)
            if not args.skip_async:
                print(f"  server at {latency:g} ms: AsyncVectorEnv ({workers} workers) ...", flush=True)
                results.setdefault("AsyncVectorEnv", {})[latency], async_start[latency] = run_async_vector(current, base_url, workers, server_pid)
    print("  in-process sleeping simulator: SageVectorEnv ...", flush=True)
    results["SageVectorEnv, in-process"] = {args.latency_ms: run_vector(setting, SleepingSimulator(args.latency_ms / 1000.0)), 0.0: run_vector(free, SleepingSimulator(0.0))}

    ideal = setting.ideal_s
    print()
    print(f"ideal: {args.turns} turns x {CALLS_PER_TURN} calls x {args.latency_ms:g} ms = {ideal:.3f} s")
    header = (
        f"{'':32s} {'ran':>4s} {'wall s':>8s} {'ratio':>7s} {'wall s @0ms':>12s} {'cost excl.':>10s} "
        f"{'CPU s':>7s} {'CPU ms/call':>11s} {'server CPU s':>12s} {'peak RSS MB':>12s} {'USS MB':>8s}"
    )
    print(header)
    print("-" * len(header))
    for name, by_latency in results.items():
        slow, fast = by_latency[args.latency_ms], by_latency[0.0]
        extrapolated = name in ("sequential loop", "AsyncVectorEnv")
        scale = args.dialogues / slow.dialogues if extrapolated else 1.0  # fewer dialogues run than asked: linear extrapolation
        wall, wall0, cpu, server = (x * scale for x in (slow.wall_s, fast.wall_s, slow.cpu_s, slow.server_cpu_s))
        label = f"{name} (x{scale:g})" if scale != 1 else name
        calls = slow.dialogues * args.turns * CALLS_PER_TURN
        per_call = f"{1000 * slow.cpu_s / calls:11.2f}"
        print(
            f"{label:32s} {slow.dialogues:4d} {wall:8.3f} {wall / ideal:7.2f} {wall0:12.3f} {(wall - wall0) / ideal:10.2f} "
            f"{cpu:7.2f} {per_call} {server:12.2f} {memory_columns(slow)}"
        )
    print()
    if async_start:
        print(f"AsyncVectorEnv took {async_start[args.latency_ms]:.1f} s to start {workers} workers (not in its wall time).")
    print("ratio = wall / ideal; cost excl. = (wall - wall at 0 ms) / ideal; (xN) = extrapolated linearly from the dialogues run.")
    print("CPU s: this process (and AsyncVectorEnv's workers), server CPU s: the server process, both during the timed rollout.")
    print("CPU ms/call: CPU s / (dialogues x turns x 2 calls), the client side's cost of one simulator call (AsyncVectorEnv: all its workers).")
    print(f"Load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.")


def memory_columns(result: Result) -> str:
    if not result.peak_rss:
        return f"{'':>12s} {'':>8s}"
    return f"{result.peak_rss / 2**20:12.0f} {result.uss / 2**20:8.0f}"

if __name__ == "__main__":
    main()
