"""The verifiers plugin (`sage-dialogue`): its taskset loads through verifiers' own plugin loader, and
an episode played through verifiers' Python API (null harness, subprocess runtime) with a stub
policy gives the same emotions as the same dialogue in process.

verifiers is optional (`pip install 'sage-gym[verifiers]'`); without it everything here is skipped.
The episode test also needs verifiers' subprocess runtime, which on first use installs `uv` and
the chat program's dependencies from PyPI: it is not offline, so it runs only when asked
(SAGE_GYM_TEST_VERIFIERS_RUNTIME=1)."""

import asyncio
import json
import os
import socket
import threading
import time

import pytest

pytest.importorskip("verifiers.v1", reason="verifiers is not installed (pip install 'sage-gym[verifiers]')")
import uvicorn  # noqa: E402
import verifiers.v1 as vf  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from verifiers.v1.utils.loaders import environment_class, load_environment, load_taskset  # noqa: E402

from agents.replies.baselines import make_reference_agent  # noqa: E402
from sage_gym.env import SageDialogueEnv  # noqa: E402
from sage_gym.integrations.verifiers import SageDialogueEnvConfig, SageDialogueTaskset, SageDialogueVfEnv  # noqa: E402
from sage_gym.simulators import BuiltinSimulator, SimulatorError  # noqa: E402

RUNTIME = os.environ.get("SAGE_GYM_TEST_VERIFIERS_RUNTIME") == "1"
needs_runtime = pytest.mark.skipif(
    not RUNTIME, reason="verifiers' subprocess runtime installs uv and the chat program's dependencies from PyPI on first use; set SAGE_GYM_TEST_VERIFIERS_RUNTIME=1 to run"
)


def test_taskset_and_env_load_through_verifiers_plugin_loader():
    config = vf.EnvConfig.model_validate({"taskset": {"id": "sage-dialogue", "scenarios": "eval", "seed": 5}})
    taskset = load_taskset(config.taskset)
    assert isinstance(taskset, SageDialogueTaskset) and environment_class("sage-dialogue") is SageDialogueVfEnv
    tasks = list(taskset)
    env = SageDialogueEnv("eval")
    assert [t.data.scenario_id for t in tasks] == list(env.scenarios.ids)
    assert tasks[2].data.prompt == env.scenarios.get(tasks[2].data.scenario_id).first_message and tasks[2].data.seed == 7
    assert "conversation partner" in tasks[0].data.system_prompt
    assert len(list(taskset.take(3))) == 3


def stub_policy_server():
    """An OpenAI-compatible endpoint whose 'model' is the empathic reference agent (streaming, as the chat program asks)."""
    agent = make_reference_agent("empathic", seed=0)

    async def chat(request):
        body = await request.json()
        history = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else "".join(p.get("text", "") for p in m["content"])} for m in body["messages"] if m["role"] in ("user", "assistant")]
        reply = agent(history)

        def chunk(delta, finish=None):
            usage = {"usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}} if finish else {}
            return "data: " + json.dumps({"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "stub", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **usage}) + "\n\n"

        async def stream():
            yield chunk({"role": "assistant", "content": reply})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]), log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def play(env, task, base):
    os.environ.setdefault("SAGE_GYM_STUB_KEY", "stub")
    ctx = vf.ModelContext(model="stub", client=vf.EvalClientConfig(base_url=base, api_key_var="SAGE_GYM_STUB_KEY"))

    async def run():
        async with env.serving():
            return await env.run_episode(task, ctx)

    return asyncio.run(run())


@needs_runtime
def test_an_episode_through_verifiers_matches_the_env():
    server, base = stub_policy_server()
    try:
        config = SageDialogueEnvConfig.model_validate(
            {"taskset": {"id": "sage-dialogue", "scenarios": "eval"}, "max_turns": 3, "assistant": {"harness": {"id": "null"}, "runtime": {"type": "subprocess"}}}
        )
        env = load_environment(config)
        task = next(iter(env.taskset))
        episode = play(env, task, base)
        assert episode.ok, episode.errors
        (trace,) = episode.traces
        local = SageDialogueEnv("eval", max_turns=3)
        agent = make_reference_agent("empathic", seed=0)
        _, info = local.reset(seed=task.data.seed, options={"scenario_id": task.data.scenario_id})
        emotions, done = [], False
        while not done:
            _, _, terminated, truncated, info = local.step(agent(info["history"]))
            emotions.append(info["emotion"])
            done = terminated or truncated
        assert [trace.metrics[f"sage_emotion_turn_{k + 1}"] for k in range(len(emotions))] == emotions
        assert trace.reward == pytest.approx((emotions[-1] - 40) / 100) and trace.metrics["final_emotion"] == emotions[-1] / 100

        class Broken(BuiltinSimulator):
            async def react(self, scenario, state, history, agent_reply):
                raise SimulatorError("the endpoint is down")

        env.simulator = Broken()
        failed = play(env, task, base)
        assert not failed.ok and "simulated user failed" in str(failed.errors) and "endpoint is down" in str(failed.errors)
    finally:
        server.should_exit = True


def test_the_documented_vf_eval_command_stays_local(tmp_path, monkeypatch):
    # vf-eval's defaults are a hosted endpoint and an upload of the results: the docs' command must override both
    import re
    import shlex
    from pathlib import Path

    from verifiers.v1.cli.eval.main import main as vf_eval

    docs = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", docs, re.S) if "vf-eval " in b)
    command = block[block.index("vf-eval ") :].replace("\\\n", " ")
    argv = shlex.split(command, comments=True)[1:]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MY_KEY", "local")
    vf_eval([*argv, "--dry-run"])
    (resolved,) = tmp_path.glob("outputs/*/configs/resolved/eval.json")
    config = json.loads(resolved.read_text())
    assert config["push"] is False
    assert config["client"]["base_url"].startswith("http://127.0.0.1:") and config["client"]["api_key_var"] == "MY_KEY"
    assert config["env"]["max_turns"] == 8 and config["env"]["taskset"]["scenarios"] == "eval"
    assert config["env"]["assistant"]["runtime"]["type"] == "subprocess"
