"""Rollout engines: the policy itself (`hf`, the default) or a colocated vLLM engine (`vllm`).

A rollout engine (`agents.learn.rollout.RolloutEngine`) is anything with `chat` (the policy's `ChatFormat`), `sample(contexts, sampling,
generator=None, max_new_tokens=None, seeds=None) -> list[Completion]` with the contract of
`Policy.sample`, `sync_weights(policy)` (called by the trainer after every optimizer phase) and
`close()`. `build_rollout_engine("hf", policy)` is the policy; `"vllm"` is a `VLLMEngine`.

**Colocated.** `VLLMEngine` runs a `vllm.LLM` inside the trainer's process, on the trainer's GPU:
no server, no second process. vLLM's `external_launcher` executor joins the trainer's process
group instead of spawning workers (as TRL's `vllm_mode="colocate"` does), so under torchrun every
rank has its own engine on its own GPU and plays its own share of the dialogues.

**Weight sync.** At construction the policy is saved once to a folder that vLLM loads (a LoRA
policy: the base model without adapters). After every optimizer phase `sync_weights(policy)`
pushes what training changed:

- LoRA: the adapter is saved (megabytes) and later requests name it with a `LoRARequest` under a
  fresh id, so vLLM loads the new adapter and evicts the old one from its LoRA cache;
- full fine-tune: every trainable tensor is copied into vLLM's model in place with the model's
  own `load_weights` (Hugging Face names in; vLLM fuses q/k/v and gate/up itself).

Either way vLLM's prefix cache is then reset: KV blocks computed under the old weights must not
be reused. Weights are read inside `agents.policy.sharding.gathered`, so an FSDP2-sharded policy works
too (every rank then has to call `sync_weights` together, as the trainer does).

**Contract and log-probs.** Prompts go in as token ids (`TokensPrompt`) and the sampled ids come
back as sampled, the stop token included. Every row gets its own `SamplingParams`: its budget,
and `seed=seeds[i]`, which gives the row its own `torch.Generator` inside vLLM, so its draws do
not depend on the rest of the batch. The engine runs with `logprobs_mode="processed_logprobs"`:
the sampled token's log-prob after temperature (T = 1 for greedy), which with top_p = 1 is
exactly `log_softmax(logits / T)`, the quantity the loss recomputes. vLLM's default
(`raw_logprobs`) is taken at T = 1, and with top_p < 1 the processed log-probs are renormalised
over the nucleus; neither is what the importance ratio needs, so with top_p < 1 the engine
samples with vLLM and recomputes the log-probs with the policy (one teacher-forced forward pass
of the batch; exact, and the ids are still vLLM's).

**Why log-probs differ slightly from the HF recomputation.** vLLM and transformers compute the
same function with different kernels (paged flash attention against SDPA, fused RMSNorm and
rotary, other GEMM tilings and accumulation orders, CUDA graphs, batch-dependent shapes). In
bf16 these round differently, so a token's log-prob differs by something of the order of 1e-3 to
1e-2 (more on long contexts), and a near-tie can even flip which token a given seed draws. The importance
ratio then starts near 1 instead of at exactly 1. The trainer logs `logprob_mismatch` (the
largest difference at the first update of every step): a steady small value is bf16 noise; one
that grows over steps means the engine is sampling from stale weights.

**Memory.** `gpu_memory_utilization` is the fraction of the whole GPU that vLLM takes for its
copy of the weights (in the policy's dtype), its activations and its KV cache; the trainer's
weights, gradients, optimizer state and activations must fit in the rest. vLLM reserves its share
at construction, from memory free at that moment, so build the engine before the first training
step. More KV cache (a larger fraction) means more dialogues decoded at once. The engine does not
use vLLM's sleep mode, so its share stays reserved while the trainer updates the policy.

Targets vLLM's V1 engine from 0.10.2 (`logprobs_mode`; in-process engine core with
`external_launcher`), through its public API: `LLM`, `SamplingParams`, `TokensPrompt`,
`LoRARequest`, `LLM.reset_prefix_cache`. The internals it touches are the model object
(`llm.llm_engine.model_executor.driver_worker.model_runner.model`, which is how TRL's colocate
mode loads weights too) and the context length (`llm.llm_engine.vllm_config.model_config`).
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents.cli import MissingExtraError
from agents.learn.rollout import RolloutEngine
from agents.policy.hf_engine import Completion, HFEngine, Sampling, turn_budgets
from agents.policy.model import Policy
from agents.policy.sharding import gathered

ROLLOUT_ENGINES = ("hf", "vllm")
VLLM_MIN_VERSION = "0.10.2"  # logprobs_mode="processed_logprobs" and the V1 engine; keep pyproject's extra in step
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
RECOMPUTE_ROWS = 8  # rows per teacher-forced pass when log-probs are recomputed (top_p < 1)


def build_rollout_engine(name: str, policy: Policy, **options: Any) -> RolloutEngine:
    """The engine `collect_rollouts` samples with: the policy's own (`HFEngine`, "hf") or a `VLLMEngine` ("vllm").

    `options` are `VLLMEngine`'s keyword arguments; the HF engine has none and ignores them.
    """
    if name == "hf":
        return HFEngine(policy)
    if name == "vllm":
        return VLLMEngine(policy, **options)
    raise ValueError(f"unknown rollout engine {name!r}: choose one of {', '.join(ROLLOUT_ENGINES)}")


def require_vllm() -> Any:
    """The `vllm` module, or an error that says what to do. Cheap: runs before any model is saved or loaded."""
    try:
        import vllm
    except ImportError as err:
        raise MissingExtraError(
            "--rollout-engine vllm needs vLLM, which is not installed: pip install 'sage-gym[vllm]' "
            "(on a machine with a CUDA GPU)"
        ) from err
    if not torch.cuda.is_available():
        raise RuntimeError("vLLM needs a CUDA GPU and torch sees none; --rollout-engine hf works everywhere (CPU included)")
    from packaging.version import Version

    version = str(getattr(vllm, "__version__", "0"))
    if Version(version) < Version(VLLM_MIN_VERSION):
        raise MissingExtraError(
            f"vLLM {version} is too old for the rollout engine (it needs >= {VLLM_MIN_VERSION} for logprobs_mode): "
            "pip install -U 'sage-gym[vllm]'"
        )
    return vllm


class VLLMEngine:
    """A colocated `vllm.LLM` holding the policy's weights; `sample` has the contract of `Policy.sample`."""

    def __init__(
        self,
        policy: Policy,
        *,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        seed: int = 0,
        work_dir: str | Path | None = None,
    ) -> None:
        require_vllm()
        from vllm import LLM

        self.policy = policy
        self.chat = policy.chat
        if work_dir is not None:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
        # the exported model (a full copy: put work_dir on a disk with room) and adapters; one per process (torchrun ranks)
        self.dir = Path(tempfile.mkdtemp(prefix="sage-vllm-", dir=work_dir))
        self._lora_id = 0
        self._lora_request: Any = None
        try:  # a failed start must not leave a copy of the model behind
            self._export(self.dir / "model")
            _single_process_launcher_env()
            # the engine core in this process, so that weights can be copied into its model directly
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            options: dict[str, Any] = dict(
                model=str(self.dir / "model"),
                # the dtype the policy computes in (mixed precision: its float32 weights are cast);
                # vLLM would run a float32 checkpoint in float16
                dtype=str(policy.autocast_dtype or policy.dtype).removeprefix("torch."),
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                enforce_eager=enforce_eager,
                seed=seed,
                distributed_executor_backend="external_launcher",
                logprobs_mode="processed_logprobs",  # after temperature (see the module docstring)
                generation_config="vllm",  # no sampling defaults or extra EOS ids from generation_config.json: stop ids are the chat's
            )
            if policy.is_lora:
                rank = max(config.r for config in policy.model.peft_config.values())
                supported = [r for r in LORA_RANKS if r >= rank]
                if not supported:
                    raise ValueError(f"vLLM serves LoRA ranks up to {LORA_RANKS[-1]}, the policy's is {rank}")
                options.update(enable_lora=True, max_lora_rank=supported[0], max_loras=1)
            self.llm: Any = LLM(**options)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.max_model_len = int(self.llm.llm_engine.vllm_config.model_config.max_model_len)
        if policy.is_lora:
            self.sync_weights(policy)  # the adapter as it is now (zero-initialised LoRA: the base model)

    # -------------------------------------------------------------------- weights

    def _export(self, folder: Path) -> None:
        """Save the model vLLM starts from: the whole model, or for LoRA the base without its adapters."""
        policy = self.policy
        with gathered(policy.forward_module), torch.no_grad():
            state = {}
            for name, param in policy.model.named_parameters():
                if policy.is_lora:
                    if "lora_" in name:  # PEFT's LoRA tensors (lora_A, lora_B)
                        continue
                    # PEFT wraps the model and each adapted layer: back to the base model's own names
                    name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
                state[name] = param.detach()
            policy.base.save_pretrained(folder, state_dict=state, safe_serialization=True)
        policy.tokenizer.save_pretrained(folder)

    def sync_weights(self, policy: Policy) -> None:
        """Push the policy's current trainable weights into the engine (after every optimizer phase)."""
        from vllm.lora.request import LoRARequest

        with gathered(policy.forward_module), torch.no_grad():
            trainable = ((name, param.detach()) for name, param in policy.model.named_parameters() if param.requires_grad)
            if policy.is_lora:
                previous = self.dir / f"lora-{self._lora_id}"
                self._lora_id += 1
                folder = self.dir / f"lora-{self._lora_id}"
                policy.model.save_pretrained(folder, state_dict=dict(trainable), safe_serialization=True)
                # a fresh id: vLLM caches adapters by id, so reusing one would keep serving the old weights
                self._lora_request = LoRARequest(f"policy-{self._lora_id}", self._lora_id, str(folder))
                shutil.rmtree(previous, ignore_errors=True)  # never requested again
            else:
                self._vllm_model().load_weights(trainable)
        self.llm.reset_prefix_cache()

    def _vllm_model(self) -> Any:
        # the model object of the in-process engine core, reached the way TRL's colocate mode does
        return self.llm.llm_engine.model_executor.driver_worker.model_runner.model

    # -------------------------------------------------------------------- sampling

    def sample(
        self,
        contexts: Sequence[Sequence[int]],
        sampling: Sampling,
        generator: torch.Generator | None = None,
        max_new_tokens: Sequence[int] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """One turn per context, until its stop token or budget (see `Policy.sample` for the contract)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        n = len(contexts)
        if n == 0:
            return []
        # vLLM cannot decode past its context length: the budget shrinks to what is left
        limits = [min(m, self.max_model_len - len(c)) for m, c in zip(turn_budgets(n, sampling, max_new_tokens, seeds), contexts, strict=True)]
        if min(limits) < 1:
            raise ValueError(f"a context fills vLLM's whole context length ({self.max_model_len} tokens); pass a larger max_model_len")
        greedy = sampling.temperature == 0
        if seeds is None and generator is not None and not greedy:
            # the legacy path: one seed per row from the caller's generator keeps runs reproducible
            seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
        params = [
            SamplingParams(
                n=1,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=limit,
                seed=None if greedy or seeds is None else int(seeds[i]),
                stop_token_ids=list(self.chat.stop_ids),
                logprobs=0,  # the sampled token's only
                detokenize=False,  # token in, token out: the rollout decodes what it needs
                skip_special_tokens=False,
            )
            for i, limit in enumerate(limits)
        ]
        prompts = [TokensPrompt(prompt_token_ids=[int(t) for t in c]) for c in contexts]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self._lora_request)
        completions = [self._completion(out.outputs[0]) for out in outputs]
        if not greedy and sampling.top_p < 1.0:
            self._recompute_logprobs(contexts, completions, sampling.logprob_temperature)
        return completions

    def _completion(self, output: Any) -> Completion:
        ids = [int(t) for t in output.token_ids]
        logprobs = [float(step[t].logprob) for step, t in zip(output.logprobs, ids, strict=True)]
        # read from the ids, not finish_reason: vLLM says "length" when the budget's last token is the stop token
        stopped = bool(ids) and ids[-1] in self.chat.stop_ids
        if output.finish_reason == "stop" and not stopped:
            # the learner trains on the stop token: a vLLM that drops it from token_ids breaks the contract
            raise RuntimeError(f"vLLM stopped a turn without returning its stop token (last ids {ids[-3:]}); this vLLM version is not supported")
        return Completion(ids, logprobs, stopped)

    @torch.no_grad()
    def _recompute_logprobs(self, contexts: Sequence[Sequence[int]], completions: list[Completion], temperature: float) -> None:
        """Replace the log-probs with the policy's own (the loss path), in place: `log_softmax(logits / T)` before top-p."""
        policy = self.policy
        was_training = policy.model.training
        policy.model.eval()
        try:
            with gathered(policy.forward_module):
                for start in range(0, len(contexts), RECOMPUTE_ROWS):
                    rows = list(zip(contexts[start : start + RECOMPUTE_ROWS], completions[start : start + RECOMPUTE_ROWS], strict=True))
                    width = max(len(c) + len(done.token_ids) for c, done in rows)
                    ids = torch.full((len(rows), width), int(policy.tokenizer.pad_token_id), dtype=torch.long)
                    attention = torch.zeros_like(ids)
                    score = torch.zeros_like(ids)
                    for r, (context, done) in enumerate(rows):
                        end = len(context) + len(done.token_ids)
                        ids[r, :end] = torch.tensor([*context, *done.token_ids])
                        attention[r, :end] = 1
                        score[r, len(context) : end] = 1
                    dev = policy.device
                    out = policy.token_logprobs(ids.to(dev), attention.to(dev), score.to(dev), temperature).logprobs.cpu()
                    for r, (context, done) in enumerate(rows):
                        done.logprobs = out[r, len(context) : len(context) + len(done.token_ids)].tolist()
        finally:
            policy.model.train(was_training)

    def close(self) -> None:
        """Free the engine (vLLM returns most, not always all, of its GPU memory) and its folder."""
        if self.llm is None:
            return
        self.llm = None
        gc.collect()
        torch.cuda.empty_cache()
        shutil.rmtree(self.dir, ignore_errors=True)


def _single_process_launcher_env() -> None:
    """`external_launcher` reads the torchrun environment; a single process gets a world of one."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return  # under torchrun
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
