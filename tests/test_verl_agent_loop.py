"""The verl command of docs/integrations.md, run through verl's own agent loop.

verl 0.7.1 (ray, numpy<2, ...) cannot share the default test environment (numpy 2), so this test
runs in its own virtual environment (`.ci/run` builds it and sets SAGE_GYM_TEST_VERL=required);
elsewhere it is skipped when verl does not import.

What runs is verl's: the docs' overrides composed by Hydra over verl's `ppo_trainer` config (the
legacy-key migration of `main_ppo` included), the dataset through verl's `create_rl_dataset`,
`AgentLoopWorker.generate_sequences` running the agent loop the rows name, and
`RewardLoopWorker.compute_score` loading the reward function from the configured path. Two pieces
stand in for what needs a GPU or a ray cluster: the generation server (a tiny random Qwen2 in
process, with vLLM's rule for how many tokens a turn may take) and ray's remote call to the reward
worker (awaited in process).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections import defaultdict
from pathlib import Path

import pytest

try:
    import verl
    from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
except ImportError as err:
    if os.environ.get("SAGE_GYM_TEST_VERL") == "required":
        raise RuntimeError(f"verl is required here (SAGE_GYM_TEST_VERL=required) but does not import: {err}") from err
    pytest.skip(f"verl does not import ({err}); .ci/run runs this test in its own environment", allow_module_level=True)

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
from verl.experimental.reward_loop import RewardLoopWorker, migrate_legacy_reward_impl
from verl.protocol import DataProto
from verl.trainer.main_ppo import create_rl_dataset
from verl.utils.dataset.rl_dataset import collate_fn
from verl.workers.rollout.replica import TokenOutput

from agents.learn.tiny_model import TinyModelSpec, tiny_random_model, tokenizer_corpus, train_tokenizer
from sage_gym.env import SageDialogueEnv
from sage_gym.integrations import verl as sage_verl

# tests/tiny.py's model size; not imported from there: verl's wheel installs a top-level `tests` package
SMALL = TinyModelSpec(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128)

INTEGRATIONS = Path(sage_verl.__file__).parent
DOCS = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
REPLY_TOKENS = 16  # the stand-in server's own cap per turn (a real model stops at its end-of-turn token)


def documented_overrides(**replace: str) -> list[str]:
    """The `main_ppo` overrides of the docs' verl command, `$SAGE` resolved, some values replaced."""
    block = next(b for b in re.findall(r"```bash\n(.*?)```", DOCS.read_text(), re.S) if "verl.trainer.main_ppo" in b)
    command = block[block.index("python -m verl.trainer.main_ppo") :].replace("\\\n", " ").replace("$SAGE", str(INTEGRATIONS))
    overrides = shlex.split(command)[3:]
    seen = set()
    for k, item in enumerate(overrides):
        key = item.split("=", 1)[0]
        if key in replace:
            overrides[k] = f"{key}={replace[key]}"
            seen.add(key)
    assert seen == set(replace), f"the docs' command sets no {set(replace) - seen}"
    return overrides


class StandInServer:
    """What `AsyncLLMServerManager.generate` returns, from a tiny model in process; records each reply per dialogue."""

    def __init__(self, model, prompt_length: int, response_length: int) -> None:
        self.model, self.prompt_length, self.response_length = model, prompt_length, response_length
        self.first_prompt: dict[str, list[int]] = {}
        self.replies: dict[str, list[list[int]]] = defaultdict(list)

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, video_data=None) -> TokenOutput:
        # vLLM's server (verl 0.7.1, vllm_async_server.generate) lets a turn take what is left of the budget
        budget = min(self.response_length, self.prompt_length + self.response_length - len(prompt_ids))
        limit = max(0, min(REPLY_TOKENS, budget))
        with torch.no_grad():
            out = self.model.generate(torch.tensor([prompt_ids]), max_new_tokens=limit, min_new_tokens=limit, do_sample=True, top_k=0, temperature=float(sampling_params["temperature"]))
        token_ids = out[0, len(prompt_ids) :].tolist()
        self.first_prompt.setdefault(request_id, list(prompt_ids))
        self.replies[request_id].append(token_ids)
        return TokenOutput(token_ids=token_ids, log_probs=[0.0] * len(token_ids))


class LocalRemote:
    """`handle.compute_score.remote(data)` of a ray actor, awaited in process."""

    def __init__(self, worker: RewardLoopWorker) -> None:
        self.compute_score = type("Method", (), {"remote": staticmethod(worker.compute_score)})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = train_tokenizer(tokenizer_corpus([]), 1024)
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_random_model(tokenizer, SMALL, seed=0).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def run_documented_rollout(model_dir: Path, tmp_path: Path, response_length: int, scenarios: int = 3):
    """verl's rollout of the docs' command on the first `scenarios` training scenarios; returns what it made."""
    data = tmp_path / "sage_train.parquet"
    pd.DataFrame(sage_verl.verl_dataset_rows("train")[:scenarios]).to_parquet(data)
    overrides = documented_overrides(
        **{"actor_rollout_ref.model.path": str(model_dir), "data.train_files": str(data), "data.val_files": str(data), "data.max_response_length": str(response_length)}
    )
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        config = migrate_legacy_reward_impl(compose(config_name="ppo_trainer", overrides=overrides))
    rollout = config.actor_rollout_ref.rollout
    model = tiny_random_model(AutoTokenizer.from_pretrained(model_dir), SMALL, seed=0).eval()
    server = StandInServer(model, rollout.prompt_length, rollout.response_length)

    class Worker(AgentLoopWorker):
        def __init__(self, *args, **kwargs):
            self.server_manager = server  # AgentLoopWorker keeps a server_manager set before it (its hook for recipes)
            super().__init__(*args, **kwargs)

    async def rollout_once():
        # built inside the running loop, as in their ray actors: both keep the loop they start in
        worker = Worker(config, servers=[], load_balancer_handle=None, reward_loop_worker_handles=[LocalRemote(RewardLoopWorker(config))])
        dataset = create_rl_dataset(config.data.train_files, config.data, worker.tokenizer, None, is_train=True)
        batch = DataProto.from_single_dict(collate_fn([dataset[k] for k in range(len(dataset))]))
        batch.meta_info["global_steps"] = 1
        rows = dict(batch.non_tensor_batch)  # what verl's trainer unions with the rollout's output
        return await worker.generate_sequences(batch), rows, worker.tokenizer

    interactions = []  # each interaction verl's agent loops create, to look inside after the rollout
    initialize = ToolAgentLoop._initialize_interactions

    def recording(self, path):
        interactions.append(initialize(self, path))
        return interactions[-1]

    ToolAgentLoop._initialize_interactions = recording
    try:
        torch.manual_seed(0)
        output, rows, tokenizer = asyncio.run(rollout_once())
    finally:
        ToolAgentLoop._initialize_interactions = initialize
    return output, rows, server, tokenizer, interactions


def replayed_return(row_kwargs: dict, replies: list[str]) -> tuple[float, str | None]:
    """The same dialogue played in process: the env's return and outcome after these replies."""
    env = SageDialogueEnv("train", initial_emotion=30, max_turns=8)
    env.reset(seed=row_kwargs["seed"], options={"scenario_id": row_kwargs["scenario_id"]})
    total = 0.0
    for reply in replies:
        _, reward, terminated, truncated, info = env.step(reply)
        total += reward
        if terminated or truncated:
            break
    return total, info["outcome"]


def check_rollout(output, rows, server, tokenizer, interactions) -> list[int]:
    """Every reply scored, scores summing to the replayed return and to the reward; no env held. Returns replies per dialogue."""
    batch = output.non_tensor_batch
    assert set(rows["agent_name"]) == {"sage_agent"}
    replies_per_dialogue = []
    for i in range(len(output)):
        kwargs = rows["extra_info"][i]["interaction_kwargs"]
        turn_scores = batch["turn_scores"][i]
        prompt_length = output.batch["prompts"].shape[1]
        prompt = output.batch["prompts"][i][output.batch["attention_mask"][i][:prompt_length] == 1].tolist()
        (request_id,) = [r for r, first in server.first_prompt.items() if first == prompt]
        replies = [tokenizer.decode(ids, skip_special_tokens=True) for ids in server.replies[request_id]]
        assert len(turn_scores) == len(replies) > 0, "a reply went unscored"
        expected, outcome = replayed_return(kwargs, replies)
        assert sum(turn_scores) == pytest.approx(expected)
        reward = float(output.batch["rm_scores"][i].sum())  # the reward function's score, placed on the last token
        assert reward == pytest.approx(sum(turn_scores))
        assert batch["unscored_replies"][i] == 0 and batch["replies"][i] == len(replies)
        replies_per_dialogue.append(len(replies))
    assert len(interactions) == len(output) and all(not m["sage"]._envs for m in interactions), "an interaction still holds an env"
    return replies_per_dialogue


def test_the_documented_command_scores_every_reply(model_dir, tmp_path):
    replies = check_rollout(*run_documented_rollout(model_dir, tmp_path, response_length=4096))
    assert max(replies) > 1  # multi-turn: the interaction answered and the loop went on


def test_a_dialogue_cut_at_the_token_budget_has_its_last_reply_scored(model_dir, tmp_path):
    replies = check_rollout(*run_documented_rollout(model_dir, tmp_path, response_length=3 * REPLY_TOKENS, scenarios=2))
    assert all(n < 8 for n in replies)  # verl stopped each on its budget, before the env's own end
