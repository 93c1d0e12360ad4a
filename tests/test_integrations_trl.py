"""TRL's GRPOTrainer through `sage_gym.integrations.trl.SageRollout`: two real training steps of a tiny
random Qwen2 built in code, on CPU, with the masking, the rewards and the limits checked."""

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl", reason="TRL is not installed (pip install 'sage-gym[trl]')")
from accelerate import Accelerator  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from sage_gym.integrations.trl import SageRollout, emotion_change_reward, final_emotion_reward, scenario_dataset  # noqa: E402
from sage_gym.scenarios import load_split  # noqa: E402
from sage_gym.simulators import BuiltinSimulator, SimulatorError  # noqa: E402

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|pad|>"]


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained in a second on the eval scenarios, with a ChatML template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = [s.first_message + " " + " ".join(s.background.details) for s in load_split("eval")]
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>", bos_token=None)
    tok.chat_template = CHATML
    return tok


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen2ForCausalLM(config)


def runs(mask, ids):
    """The maximal runs of equal mask values: [(mask value, token ids), ...]."""
    out = []
    for m, t in zip(mask, ids):
        if out and out[-1][0] == m:
            out[-1][1].append(t)
        else:
            out.append((m, [t]))
    return out


def check_masks(rollout, out):
    """env_mask is 1 exactly on sampled tokens; every 0-run is template + user tokens (or the end-of-turn closing a cut reply)."""
    chat = rollout.chat
    for ids, lps, mask in zip(out["completion_ids"], out["logprobs"], out["env_mask"]):
        assert len(ids) == len(lps) == len(mask) and mask[0] == 1
        assert all(lp == 0.0 for m, lp in zip(mask, lps) if m == 0)  # nothing sampled there
        assert all(lp < 0.0 for m, lp in zip(mask, lps) if m == 1)  # a sampled token's log-prob
        for value, tokens in runs(mask, ids):
            if value == 1:
                continue
            if tokens[0] == chat.end_of_turn_id:  # a reply cut by its limit, closed by the template
                tokens = tokens[1:]
            if tokens:
                assert tokens[: len(chat.user_prefix)] == chat.user_prefix and tokens[-len(chat.user_suffix) :] == chat.user_suffix
        assert ids[-1] == chat.end_of_turn_id  # a dialogue ends after the agent's closed reply
    assert any(0 in m for m in out["env_mask"])  # some user turns were appended, masked


def test_grpo_trainer_trains_two_steps_through_the_rollout(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    rollout = SageRollout(tokenizer, scenarios="eval", max_turns=3, max_reply_tokens=12, seed=0)
    seen, rewards = [], []

    def spying_rollout(prompts, trainer):
        out = rollout(prompts, trainer)
        seen.append((prompts, out))
        return out

    def spying_reward(completions, emotion_change, **kwargs):
        values = emotion_change_reward(completions, emotion_change)
        rewards.append((values, kwargs["outcome"], kwargs["scenario_id"]))
        return values

    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=96, max_steps=2,
        learning_rate=5e-2, beta=0.0, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0, bf16=False,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, args=args, rollout_func=spying_rollout,
        train_dataset=scenario_dataset("eval", system_prompt=rollout.system_prompt),
        reward_funcs=[spying_reward, final_emotion_reward],
    )
    trainer.train()

    assert len(seen) == 2 and len(rewards) == 2
    for prompts, out in seen:
        assert len(prompts) == 4 and all(p == prompts[0] for p in prompts)  # one prompt, repeated num_generations times
        assert len(set(out["scenario_id"])) == 1 and all(len(c) <= 96 for c in out["completion_ids"])
        assert all(1 <= t <= 3 for t in out["turns"])
        check_masks(rollout, out)
        user_tokens = sum(m.count(0) for m in out["env_mask"])
        assert user_tokens > 0 and sum(m.count(1) for m in out["env_mask"]) > 0
    for values, outcomes, _ in rewards:
        assert all(v is not None and -1 <= v <= 1 for v in values) and all(o in ("success", "failure", "left", "truncated", "token_limit") for o in outcomes)
    assert any(v != 0 for values, _, _ in rewards for v in values)  # the emotions moved
    after = dict(model.named_parameters())
    moved = [k for k in before if not torch.equal(before[k], after[k].detach())]
    assert len(moved) == len(before), sorted(set(before) - set(moved))


class FailingFor(BuiltinSimulator):
    """The built-in user, except that one scenario's simulator call fails for good."""

    def __init__(self, scenario_id):
        self.scenario_id = scenario_id

    async def react(self, scenario, state, history, agent_reply):
        if scenario.id == self.scenario_id:
            raise SimulatorError("the endpoint is down")
        return await super().react(scenario, state, history, agent_reply)


class StubTrainer:
    """The attributes of GRPOTrainer that the rollout reads."""

    def __init__(self, model, max_completion_length, **sampling):
        config = GRPOConfig(output_dir="unused", report_to="none", bf16=False, **sampling)  # before the Accelerator: it resets accelerate's state
        self.model_wrapped = model
        self.accelerator = Accelerator(cpu=True)
        self.max_completion_length = max_completion_length
        self.use_vllm = False
        self.args = config  # GRPOTrainer copies these from its args, as here
        self.temperature, self.top_p, self.top_k, self.min_p, self.repetition_penalty = config.temperature, config.top_p, config.top_k, config.min_p, config.repetition_penalty


def test_failed_dialogues_get_none_and_limits_hold(tokenizer):
    ids = load_split("eval").ids
    rollout = SageRollout(tokenizer, scenarios="eval", simulator=FailingFor(ids[1]), max_turns=6, max_reply_tokens=10, max_completion_tokens=40)
    dataset = scenario_dataset("eval", system_prompt=rollout.system_prompt)
    prompts = [dataset[0]["prompt"]] * 2 + [dataset[1]["prompt"]] * 2
    model = tiny_model(tokenizer)
    out = rollout(prompts, StubTrainer(model, max_completion_length=999))
    # token in, token out: the returned log-probs are the model's own for exactly these tokens
    with torch.no_grad():
        for prompt, tokens, lps, mask in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"], out["env_mask"]):
            logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1]
            own = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(tokens)[:, None])[:, 0]
            trained = torch.tensor(mask, dtype=torch.bool)
            assert torch.allclose(own[trained], torch.tensor(lps)[trained], atol=1e-4)
    assert out["scenario_id"] == [ids[0], ids[0], ids[1], ids[1]]
    assert out["outcome"][2:] == ["error", "error"]
    assert emotion_change_reward(None, out["emotion_change"])[2:] == [None, None]
    assert final_emotion_reward(None, out["final_emotion"])[2:] == [None, None]
    assert all(v is not None for v in out["emotion_change"][:2])
    assert all(len(c) <= 40 for c in out["completion_ids"])  # max_completion_tokens, not the trainer's 999
    assert all(o in ("token_limit", "success", "failure", "left", "truncated") for o in out["outcome"][:2])
    for mask, c in zip(out["env_mask"], out["completion_ids"]):
        replies = "".join(map(str, mask)).replace("0", " ").split()
        assert all(len(r) <= 10 for r in replies)  # max_reply_tokens per turn
    with pytest.raises(ValueError, match="no scenario opens"):
        rollout([[{"role": "user", "content": "not a scenario"}]], StubTrainer(tiny_model(tokenizer), 40))
    assert np.isclose(out["final_emotion"][0] * 100 - 40, out["emotion_change"][0] * 100)


@pytest.mark.parametrize("sampling", [{"top_k": 1}, {"top_k": 0, "generation_kwargs": {"top_k": 1}}], ids=["top_k", "generation_kwargs"])
def test_grpo_configs_sampling_settings_reach_the_sampler(tokenizer, sampling):
    # top_k=1 keeps one token: every sampled token is then the model's most likely one
    rollout = SageRollout(tokenizer, scenarios="eval", max_turns=2, max_reply_tokens=8)
    prompt = scenario_dataset("eval", system_prompt=rollout.system_prompt)[0]["prompt"]
    model = tiny_model(tokenizer)
    out = rollout([prompt] * 2, StubTrainer(model, max_completion_length=64, **sampling))
    with torch.no_grad():
        for prompt_ids, tokens, mask in zip(out["prompt_ids"], out["completion_ids"], out["env_mask"]):
            logits = model(torch.tensor([prompt_ids + tokens])).logits[0, len(prompt_ids) - 1 : -1]
            sampled = torch.tensor(mask, dtype=torch.bool)
            assert sampled.sum() > 0
            assert torch.equal(logits.argmax(-1)[sampled], torch.tensor(tokens)[sampled])


def test_the_docs_snippet_trains_one_step_on_cpu(tokenizer, tmp_path, monkeypatch):
    docs = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    section = docs[docs.index("## TRL") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the snippet writes to runs/trl
    scope = {"model": tiny_model(tokenizer), "tokenizer": tokenizer}
    exec(compile(snippet, "docs/integrations.md (TRL)", "exec"), scope)
    assert scope["trainer"].state.global_step == 1
