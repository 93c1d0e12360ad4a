"""Rollout engines: one contract (`Policy.sample`'s) for the Hugging Face policy and the colocated vLLM engine.

Every contract test runs on each engine, with a full fine-tune and with a LoRA policy:

- `hf`: the policy itself (CPU);
- `stand-in`: `VLLMEngine` driven by a stand-in `vllm` module (CPU) whose `LLM` loads the folder
  the engine exported with transformers and samples each request alone with `Policy.sample`. It
  checks the engine's own code (export, LoRA and full weight sync, per-row parameters, stop
  tokens, which log-probs are kept), not vLLM;
- `vllm`: the real engine, skipped unless vLLM is installed and a CUDA GPU is present. The policy
  runs in bf16 on the GPU, and vLLM's kernels round differently from transformers' (see
  `agents.learn.vllm_engine`), so its log-probs are compared within `VLLM_ATOL`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from agents.policy.hf_engine import Completion, HFEngine, Sampling
from agents.policy.loading import LoraSettings
from agents.policy.model import Policy
from agents.learn.tiny_model import TinyModelSpec, system_prompts, tiny_random_model
from agents.learn.vllm_engine import VLLMEngine, build_rollout_engine
from tests.tiny import one_thread, tokenizer  # noqa: F401  (fixtures)

# head size 64: every vLLM attention backend takes it (some reject the 16 of tests.tiny.SMALL)
ENGINE_SPEC = TinyModelSpec(hidden_size=128, layers=2, heads=2, kv_heads=1, intermediate_size=256)
EXACT_ATOL = 1e-4  # float32 on the CPU: the same computation up to summation order
VLLM_ATOL = 5e-2  # bf16, other kernels: typical differences are 1e-3..1e-2 per token
LORA = LoraSettings(r=8, alpha=16)  # a rank vLLM serves (max_lora_rank is one of 1, 8, 16, 32, ...)
MESSAGES = ("I had a terrible week.", "Nobody listens.", "Hi.", "My boss yelled at me again today in front of everyone.")


def vllm_ready() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def stop_prone(model: Any, end_of_turn: int) -> Any:
    """Make the end-of-turn token likely after any token, so that some turns stop and others run out.

    A random model almost never samples it (1 in ~1000). A direction shared by every embedding
    shows up in every final hidden state; pointing the end-of-turn row (tied input and output
    embedding) along it raises that token's logit everywhere. A sharper final norm makes the
    distributions less flat, so that greedy decoding is more than one token.
    """
    with torch.no_grad():
        embedding = model.get_input_embeddings().weight
        shared = torch.randn(embedding.shape[1], generator=torch.Generator().manual_seed(0)) * 0.02
        embedding += shared
        embedding[end_of_turn] = shared * 2.0
        model.model.norm.weight.mul_(5.0)
    return model


# ----------------------------------------------------------------------------------------------
# a stand-in vllm module (CPU): exercises VLLMEngine's code without vLLM


class StandInLLM:
    """`vllm.LLM` on the CPU: transformers loads the exported folder, `Policy.sample` serves each request alone."""

    def __init__(self, model: str, **options: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder, self.options, self.prefix_resets, self.lora_id = model, options, 0, None
        self.base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.runner = Policy.from_model(self.base, self.tokenizer, system_prompt=None)
        worker = SimpleNamespace(model_runner=SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights)))
        model_config = SimpleNamespace(max_model_len=self.base.config.max_position_embeddings)
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker), vllm_config=SimpleNamespace(model_config=model_config))

    def _load_weights(self, weights: Any) -> None:
        params = dict(self.base.named_parameters())
        with torch.no_grad():
            for name, tensor in weights:
                params[name].copy_(tensor)  # a KeyError is a name vLLM would not know either

    def reset_prefix_cache(self) -> None:
        self.prefix_resets += 1

    def generate(self, prompts: list[dict], params: list[Any], use_tqdm: bool = True, lora_request: Any = None) -> list[Any]:
        if lora_request is not None and lora_request.lora_int_id != self.lora_id:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(self.folder, dtype=torch.float32)
            self.runner = Policy.from_model(PeftModel.from_pretrained(base, lora_request.lora_path), self.tokenizer, system_prompt=None)
            self.lora_id = lora_request.lora_int_id
        outputs = []
        for prompt, p in zip(prompts, params, strict=True):
            assert set(p.stop_token_ids) == set(self.runner.chat.stop_ids) and p.logprobs == 0 and p.n == 1
            seeds = None if p.seed is None else [p.seed]
            [done] = self.runner.sample([prompt["prompt_token_ids"]], Sampling(p.temperature, p.top_p, p.max_tokens), seeds=seeds)
            logprobs = done.logprobs
            if p.temperature > 0 and p.top_p < 1:
                logprobs = [lp + 0.5 for lp in logprobs]  # vLLM renormalises over the nucleus: not the contract's numbers
            steps = [{t: SimpleNamespace(logprob=lp)} for t, lp in zip(done.token_ids, logprobs)]
            finish = "stop" if done.stopped else "length"
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=tuple(done.token_ids), logprobs=steps, finish_reason=finish)]))
        return outputs


def stand_in_modules(version: str = "0.11.0") -> dict[str, types.ModuleType]:
    vllm = types.ModuleType("vllm")
    vllm.__version__ = version
    vllm.LLM = StandInLLM
    vllm.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, lora_id, path: SimpleNamespace(lora_name=name, lora_int_id=lora_id, lora_path=path)
    return {"vllm": vllm, "vllm.inputs": inputs, "vllm.lora": lora, "vllm.lora.request": request}


@contextlib.contextmanager
def stand_in_vllm() -> Iterator[None]:
    """The stand-in in sys.modules, and the environment restored afterwards (the engine sets the torchrun variables)."""
    saved = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        for name, module in stand_in_modules().items():
            mp.setitem(sys.modules, name, module)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def build_stand_in(policy: Policy, **options: Any) -> VLLMEngine:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: True)  # only the construction checks for a GPU
        return build_rollout_engine("vllm", policy, **options)


# ----------------------------------------------------------------------------------------------
# the engines under test


@dataclass
class Case:
    kind: str  # hf, stand-in or vllm
    engine: Any
    policy: Policy

    @property
    def atol(self) -> float:
        return VLLM_ATOL if self.kind == "vllm" else EXACT_ATOL

    def contexts(self) -> list[list[int]]:
        return [self.policy.chat.prompt_ids(m) for m in MESSAGES]


CASES = [f"{kind}-{weights}" for kind in ("hf", "stand-in", "vllm") for weights in ("full", "lora")]


@pytest.fixture(scope="module", params=CASES)
def case(request, tokenizer) -> Iterator[Case]:  # noqa: F811
    kind, weights = request.param.rsplit("-", 1)
    if kind == "vllm" and not vllm_ready():
        pytest.skip("the vLLM engine needs vllm installed and a CUDA GPU (pip install 'sage-gym[vllm]')")
    device, dtype = ("cuda", torch.bfloat16) if kind == "vllm" else ("cpu", torch.float32)
    model = stop_prone(tiny_random_model(tokenizer, ENGINE_SPEC, seed=1), tokenizer.convert_tokens_to_ids("<|im_end|>"))
    policy = Policy.from_model(
        model.to(dtype), tokenizer, system_prompt=system_prompts()["think"], device=device, lora=LORA if weights == "lora" else None
    )
    if kind == "hf":
        yield Case(kind, build_rollout_engine("hf", policy), policy)
        return
    with stand_in_vllm() if kind == "stand-in" else contextlib.nullcontext():
        # eager mode: no CUDA graph capture, which would only slow down a test this small
        options = dict(gpu_memory_utilization=0.2, enforce_eager=True)
        engine = build_stand_in(policy, **options) if kind == "stand-in" else VLLMEngine(policy, **options)
        try:
            yield Case(kind, engine, policy)
        finally:
            engine.close()


@torch.no_grad()
def recompute(policy: Policy, contexts: list[list[int]], completions: list[Completion], temperature: float) -> list[list[float]]:
    """The learner's log-probs (`Policy.token_logprobs`) of each completion, on prompt + completion."""
    policy.model.eval()
    out = []
    for context, done in zip(contexts, completions):
        ids = torch.tensor([context + done.token_ids], device=policy.device)
        score = torch.zeros_like(ids)
        score[0, len(context) :] = 1
        lp = policy.token_logprobs(ids, torch.ones_like(ids), score, temperature).logprobs[0, len(context) :]
        out.append(lp.tolist())
    return out


def assert_logprobs_match(case: Case, contexts: list[list[int]], completions: list[Completion], temperature: float) -> None:
    expected = recompute(case.policy, contexts, completions, temperature)
    for done, want in zip(completions, expected):
        torch.testing.assert_close(torch.tensor(done.logprobs), torch.tensor(want), atol=case.atol, rtol=0)


def token_ids(completions: list[Completion]) -> list[list[int]]:
    return [c.token_ids for c in completions]


# ----------------------------------------------------------------------------------------------
# the contract, on every engine


def test_completions_keep_the_contract(case: Case) -> None:
    contexts = case.contexts() * 2
    budgets = [12, 3, 8, 1, 10, 10, 2, 6]
    sampling = Sampling(0.8, 1.0, 10)
    out = case.engine.sample(contexts, sampling, max_new_tokens=budgets, seeds=list(range(8)))
    assert len(out) == len(contexts)
    stop_ids = set(case.policy.chat.stop_ids)
    for done, budget in zip(out, budgets):
        limit = min(budget, sampling.max_new_tokens)
        ids = done.token_ids
        assert 1 <= len(ids) <= limit and len(done.logprobs) == len(ids)
        assert all(isinstance(t, int) and 0 <= t < len(case.policy.tokenizer) for t in ids)
        assert not stop_ids & set(ids[:-1]), "a turn ends at its first stop token"
        if done.stopped:
            assert ids[-1] in stop_ids  # the stop token is returned: the learner trains on it
        else:
            assert ids[-1] not in stop_ids and len(ids) == limit  # out of budget, exactly
    if case.kind != "vllm":  # the CPU engines draw the same tokens: both endings happen
        assert {done.stopped for done in out} == {True, False}
    # the rollout's log-probs are the learner's: the importance ratio starts at 1
    assert_logprobs_match(case, contexts, out, sampling.logprob_temperature)


def test_greedy_takes_the_argmax_and_scores_at_temperature_one(case: Case) -> None:
    contexts = case.contexts()
    out = case.engine.sample(contexts, Sampling(0.0, 1.0, 8))
    for context, done in zip(contexts, out):
        ids = torch.tensor([context + done.token_ids], device=case.policy.device)
        with torch.no_grad():
            logits = case.policy.model(input_ids=ids).logits[0, len(context) - 1 : -1].float()
        logprobs = torch.log_softmax(logits, -1)
        chosen = logprobs.gather(-1, ids[0, len(context) :, None])[:, 0]
        # the most likely token (in bf16 vLLM may take the other side of a near-tie, never more than its tolerance)
        assert float((logprobs.max(-1).values - chosen).max()) <= (case.atol if case.kind == "vllm" else 1e-5)
    assert_logprobs_match(case, contexts, out, 1.0)


def test_top_p_log_probs_are_taken_before_truncation(case: Case) -> None:
    contexts = case.contexts()
    sampling = Sampling(0.7, 0.9, 8)
    out = case.engine.sample(contexts, sampling, seeds=[5, 6, 7, 8])
    assert_logprobs_match(case, contexts, out, 0.7)


def test_seeds_reproduce_and_a_row_does_not_depend_on_its_batch(case: Case) -> None:
    contexts, seeds = case.contexts(), [21, 22, 23, 24]
    sampling = Sampling(1.0, 1.0, 8)
    first = case.engine.sample(contexts, sampling, seeds=seeds)
    again = case.engine.sample(contexts, sampling, seeds=seeds)
    alone = [case.engine.sample([c], sampling, seeds=[s])[0] for c, s in zip(contexts, seeds)]
    reordered = case.engine.sample(contexts[::-1], sampling, seeds=seeds[::-1])[::-1]
    runs = [token_ids(again), token_ids(alone), token_ids(reordered)]
    # a seed that did not reach its row would change the first token (~1000 near-equal choices)
    assert all([row[0] for row in run] == [row[0] for row in token_ids(first)] for run in runs)
    if case.kind == "vllm" and any(run != token_ids(first) for run in runs):
        pytest.xfail("vLLM in bf16: a row's logits depend in the last bits on its batch and on prefix-cache hits, which can flip a near-tie draw")
    assert all(run == token_ids(first) for run in runs)
    # the legacy path: one generator for the whole batch
    a = case.engine.sample(contexts, sampling, torch.Generator().manual_seed(3))
    b = case.engine.sample(contexts, sampling, torch.Generator().manual_seed(3))
    assert token_ids(a) == token_ids(b)


def test_sync_weights_makes_the_engine_follow_the_policy(case: Case) -> None:
    policy, engine = case.policy, case.engine
    saved = [p.detach().clone() for p in policy.trainable_parameters()]
    contexts, sampling = case.contexts(), Sampling(1.0, 1.0, 8)
    noise = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():  # an "update" much larger than any tolerance (LoRA: move B off its zero init)
            for p in policy.trainable_parameters():
                p.add_(torch.randn(p.shape, generator=noise).to(p) * 0.1)
        engine.sync_weights(policy)
        out = engine.sample(contexts, sampling, seeds=[31, 32, 33, 34])
        assert_logprobs_match(case, contexts, out, 1.0)  # scored by the new weights
        with torch.no_grad():
            for p, old in zip(policy.trainable_parameters(), saved):
                p.copy_(old)
        old_lp = recompute(policy, contexts, out, 1.0)
        # ...which differ from the old ones by far more than the tolerance: a stale engine fails above
        gap = torch.cat([torch.tensor(o.logprobs) - torch.tensor(lp) for o, lp in zip(out, old_lp)]).abs().mean()
        assert gap > 10 * case.atol
    finally:
        with torch.no_grad():
            for p, old in zip(policy.trainable_parameters(), saved):
                p.copy_(old)
        engine.sync_weights(policy)


def test_the_stand_in_engine_samples_what_the_policy_samples(case: Case) -> None:
    """The engine's plumbing adds nothing: through the stand-in, the same seeds give the policy's own turns."""
    if case.kind != "stand-in":
        pytest.skip("the stand-in's sampler is Policy.sample; vLLM's is not")
    contexts = case.contexts()
    budgets, seeds = [8, 2, 5, 8], [41, 42, 43, 44]
    sampling = Sampling(0.9, 1.0, 8)
    ours = case.engine.sample(contexts, sampling, max_new_tokens=budgets, seeds=seeds)
    theirs = case.policy.sample(contexts, sampling, max_new_tokens=budgets, seeds=seeds)
    assert token_ids(ours) == token_ids(theirs)
    assert [c.stopped for c in ours] == [c.stopped for c in theirs]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=EXACT_ATOL, rtol=0)
    llm = case.engine.llm
    assert llm.options["logprobs_mode"] == "processed_logprobs"
    assert llm.options["distributed_executor_backend"] == "external_launcher"
    assert llm.options["dtype"] == "float32"
    assert llm.options.get("enable_lora", False) == case.policy.is_lora
    if case.policy.is_lora:
        assert llm.options["max_lora_rank"] == LORA.r
    resets = llm.prefix_resets
    case.engine.sync_weights(case.policy)
    assert llm.prefix_resets == resets + 1  # KV blocks of the old weights are never reused
    assert len(list(case.engine.dir.glob("lora-*"))) == int(case.policy.is_lora)  # superseded adapters are deleted


# ----------------------------------------------------------------------------------------------
# choosing an engine, and the errors without vLLM or a GPU (CPU)


@pytest.fixture()
def policy(tokenizer) -> Policy:  # noqa: F811
    return Policy.from_model(tiny_random_model(tokenizer, ENGINE_SPEC, seed=1), tokenizer, system_prompt=None)


def test_the_hf_engine_samples_with_the_policy(policy: Policy) -> None:
    engine = build_rollout_engine("hf", policy)
    assert isinstance(engine, HFEngine) and engine.policy is policy and engine.chat is policy.chat


def test_unknown_engine_names_the_choices(policy: Policy) -> None:
    with pytest.raises(ValueError, match="hf, vllm"):
        build_rollout_engine("sglang", policy)


def test_missing_vllm_says_how_to_install_it(policy: Policy, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'sage-gym\[vllm\]'"):
        build_rollout_engine("vllm", policy)


def test_vllm_without_a_gpu_points_to_the_hf_engine(policy: Policy, monkeypatch) -> None:
    fake = types.ModuleType("vllm")
    fake.__version__ = "0.11.0"
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"CUDA GPU.*--rollout-engine hf"):
        build_rollout_engine("vllm", policy)


def test_too_old_vllm_is_refused(policy: Policy, monkeypatch) -> None:
    for name, module in stand_in_modules(version="0.6.3").items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ImportError, match=r">= 0\.10\.2"):
        build_rollout_engine("vllm", policy)


def test_close_frees_the_engine_and_its_folder(policy: Policy, tmp_path) -> None:
    with stand_in_vllm():
        engine = build_stand_in(policy, work_dir=tmp_path / "engines")
        assert engine.dir.parent == tmp_path / "engines" and (engine.dir / "model" / "config.json").is_file()
        engine.close()
        engine.close()  # twice is fine
    assert engine.llm is None and not engine.dir.exists()


# ----------------------------------------------------------------------------------------------
# the engine inside a training run


def train(tokenizer, tmp_path, engine: str, lora: bool, steps: int = 2) -> tuple[list[dict[str, float]], Any]:  # noqa: F811
    from agents.learn.config import TrainConfig
    from agents.learn.grpo import GRPO
    from agents.learn.trainer import Trainer

    cfg = TrainConfig.from_options(
        model="in-memory", template="direct", steps=steps, group_size=2, scenarios_per_step=2, max_turns=2, max_new_tokens=8,
        lr=2e-2, output_dir=str(tmp_path / engine), save_every=0, progress=False, tensorboard=False, transcripts=False,
        rollout_engine=engine,
    )
    model = tiny_random_model(tokenizer, ENGINE_SPEC, seed=1)
    policy = Policy.from_model(model, tokenizer, system_prompt=system_prompts()["direct"], lora=LORA if lora else None)
    with stand_in_vllm():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torch.cuda, "is_available", lambda: True)  # only the engine's construction asks
            trainer = Trainer(cfg, algorithm=GRPO, policy=policy)
        try:
            history = trainer.fit()
        finally:
            engine_object = trainer.engine
            trainer.close()
    return history, engine_object


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_run_with_the_engine_is_the_run_with_the_policy(tokenizer, tmp_path, lora: bool) -> None:  # noqa: F811
    """`--rollout-engine vllm` (the stand-in) samples the same dialogues as the policy, step after step:
    the engine is synced after every update, or the second step's rollouts would come from stale weights."""
    with_policy, _ = train(tokenizer, tmp_path, "hf", lora)
    with_engine, engine = train(tokenizer, tmp_path, "vllm", lora)
    assert isinstance(engine, VLLMEngine)
    assert [m["return"] for m in with_engine] == pytest.approx([m["return"] for m in with_policy], abs=1e-9)
    assert [m["policy_tokens"] for m in with_engine] == [m["policy_tokens"] for m in with_policy]
    assert all(m["logprob_mismatch"] < EXACT_ATOL for m in with_engine if "logprob_mismatch" in m)


def test_the_engine_cannot_sync_sharded_weights(tokenizer, tmp_path) -> None:  # noqa: F811
    from agents.learn.config import TrainConfig
    from agents.learn.distributed import Distributed
    from agents.learn.grpo import GRPO
    from agents.learn.trainer import Trainer

    cfg = TrainConfig.from_options(model="in-memory", output_dir=str(tmp_path), rollout_engine="vllm", parallel="fsdp2", scenarios_per_step=2)
    with pytest.raises(ValueError, match="--parallel ddp"):
        Trainer(cfg, algorithm=GRPO, dist=Distributed(rank=0, world_size=2))
