"""OpenEnv's own client (`openenv-core`'s GenericEnvClient) against `sage_gym.servers.env_server`: 8 concurrent
sessions to the end, with the same emotions as the same dialogues played in process.

openenv-core is a test dependency (the dev extra); without it this test is skipped.
It cannot share a venv with verifiers 0.4 (whose mcp pin breaks openenv's fastmcp)."""

import asyncio

import pytest

from agents.replies.baselines import make_reference_agent
from sage_gym.servers.env_server import ServeConfig, serve_in_thread
from tests.test_serve import ENV_KWARGS, play_local

# importing the client imports openenv's server side too (fastapi, fastmcp): a verifiers 0.4 install
# next to it pins an mcp that fastmcp cannot import, which also ends here
try:
    from openenv.core.generic_client import GenericEnvClient
except ImportError as err:
    pytest.skip(f"openenv-core is not importable ({err}); pip install openenv-core==0.3.0, without verifiers 0.4 beside it", allow_module_level=True)


async def play_with_generic_client(base: str, seed: int) -> list[tuple[int, float, bool]]:
    agent = make_reference_agent("empathic", seed=seed)
    async with GenericEnvClient(base_url=base) as env:
        result = await env.reset(seed=seed)
        trace = []
        while not result.done:
            result = await env.step({"message": agent(result.observation["history"])})
            trace.append((result.observation["emotion"], result.reward, result.done))
        state = await env.state()
        assert state["done"] and state["step_count"] == len(trace)
    return trace


def test_generic_env_client_plays_eight_concurrent_sessions():
    async def sessions(base):
        return await asyncio.gather(*(play_with_generic_client(base, seed) for seed in range(8)))

    with serve_in_thread(ServeConfig(env_kwargs=dict(ENV_KWARGS), max_sessions=8)) as base:
        remote = asyncio.run(sessions(base))
    assert remote == [play_local(seed) for seed in range(8)]
    assert all(len(trace) >= 1 for trace in remote)
