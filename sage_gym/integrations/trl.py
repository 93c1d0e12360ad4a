"""SageDialogue inside TRL's GRPOTrainer: a `rollout_func` that plays whole dialogues (`pip install 'sage-gym[trl]'`).

    from trl import GRPOConfig, GRPOTrainer
    from sage_gym.integrations.trl import SageRollout, scenario_dataset, emotion_change_reward

    rollout = SageRollout(tokenizer, scenarios="train", max_turns=8, max_reply_tokens=96)
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, args=GRPOConfig(num_generations=4, max_completion_length=768, ...),
        train_dataset=scenario_dataset("train", system_prompt=rollout.system_prompt),
        reward_funcs=[emotion_change_reward], rollout_func=rollout,
    )

Per call TRL hands over the prompts of its generation batch (each one already repeated
`num_generations` times, nothing else about the rows). `SageRollout` recovers each prompt's
scenario from its first user message, resets a `SageVectorEnv` (autoreset off) with one dialogue
per prompt, and then plays turn by turn: one generation batch for the dialogues still running,
one env step for all of them. Token in, token out: each dialogue is one growing token sequence,
the agent's sampled tokens are appended as they were sampled (never re-tokenized) and the user's
answer is appended as the chat template's delta (end of the agent's turn, the user message, the
next generation prompt). It returns `prompt_ids`, `completion_ids`, `logprobs` and `env_mask`
(1 = a token the policy sampled and is trained on; 0 = user and template tokens), plus the fields
the reward functions read (`emotion_change`, `final_emotion`, `outcome`, `turns`, `scenario_id`).

Limits: `max_turns` agent replies, `max_reply_tokens` per reply, and `max_completion_tokens`
(default: the trainer's `max_completion_length`, which TRL does not enforce on this path) for the
whole dialogue; a dialogue that would pass it stops after the agent's last complete reply
(outcome `token_limit`, scored on the emotion it reached). A dialogue whose simulator failed
(outcome `error`) gets `None` from both reward functions, which TRL leaves out of its group
statistics: never a made-up zero.

Credit: TRL gives one scalar per dialogue to every trained token of it (the group-normalized
return); per-turn credit is not kept. Generation runs on the trainer's model with
`transformers.generate`; with `use_vllm=True` the turns go through TRL's own vLLM engine
(`trainer.vllm_generation.generate`), a path written against TRL 1.16 but not tested here (no GPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sage_gym.prompts import default_prompts
from sage_gym.scenarios import ScenarioSet, resolve_scenarios
from sage_gym.vector import SageVectorEnv, unbatch_infos

PLACEHOLDER = "\uE000sage\uE001"  # private-use characters: no tokenizer merges them with their neighbours


class ChatDeltas:
    """The chat template cut into token pieces, so a dialogue grows by appending tokens only."""

    def __init__(self, tokenizer: Any, system_prompt: str | None) -> None:
        self.tokenizer = tokenizer
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        render = lambda messages, gen: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)  # noqa: E731
        opening = render(system + [{"role": "user", "content": PLACEHOLDER}], True)
        self.prompt_parts = opening.split(PLACEHOLDER)
        base = system + [{"role": "user", "content": "hello"}, {"role": "assistant", "content": PLACEHOLDER}]
        with_reply = render(base, False)
        with_user = render(base + [{"role": "user", "content": PLACEHOLDER + "2"}], True)
        if len(self.prompt_parts) != 2 or not with_user.startswith(with_reply):
            raise ValueError("the chat template must render a dialogue prefix stably (turns are appended as token deltas)")
        after_reply = with_reply[with_reply.rindex(PLACEHOLDER) + len(PLACEHOLDER) :]
        eos = tokenizer.eos_token or ""
        specials = [t for t in tokenizer.all_special_tokens if t and after_reply.startswith(t)] or ([eos] if eos and after_reply.startswith(eos) else [])
        if not specials:
            raise ValueError(f"the chat template writes {after_reply[:30]!r} after an assistant message: no end-of-turn token found")
        self.end_of_turn = max(specials, key=len)
        self.end_of_turn_id = tokenizer.convert_tokens_to_ids(self.end_of_turn)
        user_parts = (after_reply[len(self.end_of_turn) :] + with_user[len(with_reply) :]).split(PLACEHOLDER + "2")
        self.user_prefix, self.user_suffix = self.encode(user_parts[0]), self.encode(user_parts[1])
        self.stop_ids = {self.end_of_turn_id} | ({int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set())

    def encode(self, text: str, untrusted: bool = False) -> list[int]:
        # untrusted text (the simulated user's words) has its special tokens split, so it cannot forge a turn
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=untrusted)["input_ids"]) if text else []

    def prompt_ids(self, first_message: str) -> list[int]:
        return self.encode(self.prompt_parts[0]) + self.encode(first_message, True) + self.encode(self.prompt_parts[1])

    def user_turn_ids(self, message: str) -> list[int]:
        """What follows the agent's end-of-turn token: the user's message and the next generation prompt."""
        return self.user_prefix + self.encode(message, True) + self.user_suffix


def scenario_dataset(scenarios: str | ScenarioSet = "train", *, system_prompt: str | None = None, repeat: int = 1) -> Any:
    """A `datasets.Dataset` of conversational prompts, one per scenario (times `repeat`), with `scenario_id`."""
    from datasets import Dataset

    scenario_set = resolve_scenarios(scenarios)
    _scenario_by_first_message(scenario_set)  # fails here if two scenarios open with the same words
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    rows = [{"prompt": system + [{"role": "user", "content": s.first_message}], "scenario_id": s.id} for s in scenario_set] * repeat
    return Dataset.from_list(rows)


def _scenario_by_first_message(scenarios: ScenarioSet) -> dict[str, str]:
    by_message: dict[str, str] = {}
    for s in scenarios:
        if s.first_message in by_message:
            raise ValueError(f"scenarios {by_message[s.first_message]!r} and {s.id!r} open with the same message: a prompt cannot tell them apart")
        by_message[s.first_message] = s.id
    return by_message


def emotion_change_reward(completions: Sequence[Any], emotion_change: Sequence[float | None], **kwargs: Any) -> list[float | None]:
    """(e_T - e_0) / 100 of each dialogue; None for a dialogue the simulator failed."""
    return [None if value is None else float(value) for value in emotion_change]


def final_emotion_reward(completions: Sequence[Any], final_emotion: Sequence[float | None], **kwargs: Any) -> list[float | None]:
    """e_T / 100 of each dialogue (RLVER's reward); None for a dialogue the simulator failed."""
    return [None if value is None else float(value) for value in final_emotion]


class _Dialogues:
    """The growing token rows of one batch of dialogues, and how each ended."""

    def __init__(self, start: list[dict[str, Any]], n: int) -> None:
        self.n = n
        self.completion: list[list[int]] = [[] for _ in range(n)]
        self.logprobs: list[list[float]] = [[] for _ in range(n)]
        self.mask: list[list[int]] = [[] for _ in range(n)]
        self.running = np.ones(n, dtype=bool)
        self.final: list[dict[str, Any]] = list(start)
        self.outcome: list[str | None] = [None] * n
        self.turns = [0] * n

    def append(self, i: int, ids: list[int], logprobs: list[float], trained: int) -> None:
        """Tokens appended to dialogue i; the first `trained` of them are the policy's to learn from."""
        self.completion[i] += ids
        self.logprobs[i] += logprobs
        self.mask[i] += [1] * trained + [0] * (len(ids) - trained)

    def batch(self, prompt_ids: list[list[int]], scenario_ids: list[str], initial: list[int]) -> dict[str, list[Any]]:
        """The rollout function's answer to TRL."""
        failed = [o == "error" for o in self.outcome]
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": self.completion,
            "logprobs": self.logprobs,
            "env_mask": self.mask,
            "emotion_change": [None if bad else (f["emotion"] - e0) / 100.0 for bad, f, e0 in zip(failed, self.final, initial, strict=True)],
            "final_emotion": [None if bad else f["emotion"] / 100.0 for bad, f in zip(failed, self.final, strict=True)],
            "outcome": self.outcome,
            "turns": self.turns,
            "scenario_id": scenario_ids,
        }


class SageRollout:
    """`GRPOTrainer(rollout_func=SageRollout(tokenizer, ...))`: whole dialogues with the simulated user."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        scenarios: str | ScenarioSet = "train",
        simulator: Any = "builtin",
        simulator_kwargs: Mapping[str, Any] | None = None,
        max_turns: int = 8,
        max_reply_tokens: int = 96,
        max_completion_tokens: int | None = None,
        system_prompt: str | None = None,
        template: str = "direct",
        temperature: float | None = None,
        seed: int = 0,
        **env_kwargs: Any,
    ) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt if system_prompt is not None else default_prompts().agent_system_prompt(template)
        self.chat = ChatDeltas(tokenizer, self.system_prompt)
        self.scenarios = resolve_scenarios(scenarios)
        self.scenario_by_message = _scenario_by_first_message(self.scenarios)
        self.simulator, self.simulator_kwargs = simulator, dict(simulator_kwargs or {})
        self.max_turns, self.max_reply_tokens, self.max_completion_tokens = max_turns, max_reply_tokens, max_completion_tokens
        self.temperature, self.seed, self.env_kwargs = temperature, seed, env_kwargs
        self.calls = 0
        self._envs: SageVectorEnv | None = None

    # ------------------------------------------------------------------ TRL's entry point

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, list[Any]]:
        budget = self.max_completion_tokens or trainer.max_completion_length
        if budget < 2:
            raise ValueError(f"the completion budget must hold at least one reply token and its end, got {budget}")
        scenario_ids = [self._scenario_of(p) for p in prompts]
        envs = self._vector_env(len(prompts))
        seed = self.seed + self.calls * len(prompts)
        self.calls += 1
        _, infos = envs.reset(seed=seed, options={"scenario_ids": scenario_ids})
        start = unbatch_infos(infos, envs.num_envs)
        prompt_ids = [self.chat.prompt_ids(self.scenarios.get(sid).first_message) for sid in scenario_ids]
        dialogues = _Dialogues(start, len(prompts))
        for _ in range(self.max_turns):
            active = [i for i in range(dialogues.n) if dialogues.running[i]]
            if not active:
                break
            self._play_turn(envs, trainer, active, prompt_ids, dialogues, budget)
        for i in range(dialogues.n):
            if dialogues.running[i]:  # max_turns here below the env's own limit
                dialogues.outcome[i] = "truncated"
        return dialogues.batch(prompt_ids, scenario_ids, initial=[info["emotion"] for info in start])

    def _play_turn(self, envs: SageVectorEnv, trainer: Any, active: list[int], prompt_ids: list[list[int]], dialogues: _Dialogues, budget: int) -> None:
        """One reply from each active dialogue, the env's answer, and the user's turn appended."""
        # one token of the room is kept for the end-of-turn token that closes a reply cut short
        limits = [min(self.max_reply_tokens, budget - len(dialogues.completion[i]) - 1) for i in active]
        sampled = self._generate(trainer, [prompt_ids[i] + dialogues.completion[i] for i in active], limits)
        actions: list[str | None] = [None] * dialogues.n
        for i, (ids, lps) in zip(active, sampled, strict=True):
            if not ids or ids[-1] not in self.chat.stop_ids:  # cut by a token limit: close the turn (not trained)
                ids, lps, closed = ids + [self.chat.end_of_turn_id], lps + [0.0], 1
            else:
                closed = 0
            dialogues.append(i, ids, lps, trained=len(ids) - closed)
            actions[i] = self.tokenizer.decode([t for t in ids if t not in self.chat.stop_ids], skip_special_tokens=True).strip()
        _, _, terminated, truncated, infos = envs.step(actions)
        per_env = unbatch_infos(infos, dialogues.n)
        for i in active:
            dialogues.final[i], dialogues.turns[i] = per_env[i], per_env[i]["turn"]
            if terminated[i] or truncated[i]:
                dialogues.running[i], dialogues.outcome[i] = False, per_env[i]["outcome"]
                continue
            user = self.chat.user_turn_ids(per_env[i]["history"][-1]["content"])
            if len(dialogues.completion[i]) + len(user) + 2 > budget:  # no room for another reply (a token and its end)
                dialogues.running[i], dialogues.outcome[i] = False, "token_limit"
                continue
            dialogues.append(i, user, [0.0] * len(user), trained=0)

    # ------------------------------------------------------------------ helpers

    def _scenario_of(self, prompt: Any) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        first = next((m["content"] for m in messages if m["role"] == "user"), None)
        if first not in self.scenario_by_message:
            raise ValueError(f"no scenario opens with the prompt's first user message {str(first)[:60]!r}: build the dataset with scenario_dataset() over the same scenarios")
        return self.scenario_by_message[first]

    def _vector_env(self, n: int) -> SageVectorEnv:
        if self._envs is None or self._envs.num_envs != n:
            if self._envs is not None:
                self._envs.close()
            kwargs = dict(self.env_kwargs, max_turns=self.max_turns)
            self._envs = SageVectorEnv(n, self.scenarios, self.simulator, self.simulator_kwargs, autoreset_mode="disabled", **kwargs)
        return self._envs

    def _generate(self, trainer: Any, sequences: list[list[int]], limits: list[int]) -> list[tuple[list[int], list[float]]]:
        """One reply per sequence: sampled token ids and their log-probabilities (at the sampling temperature)."""
        if getattr(trainer, "use_vllm", False):
            return self._generate_vllm(trainer, sequences, limits)
        import torch
        from trl.models import unwrap_model_for_generation

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.chat.end_of_turn_id
        width = max(len(s) for s in sequences)
        device = trainer.accelerator.device
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=device)
        attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
        sampling = self._sampling_kwargs(trainer)
        temperature = sampling["temperature"]
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model, torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                **sampling,
                max_new_tokens=max(1, max(limits)),
                do_sample=True,
                eos_token_id=sorted(self.chat.stop_ids),
                pad_token_id=pad,
                return_dict_in_generate=True,
                output_logits=True,
            )
        new = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1).float() / temperature
        token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        replies = []
        for row, lps, limit in zip(new.tolist(), token_logprobs.tolist(), limits, strict=True):
            end = next((k + 1 for k, t in enumerate(row) if t in self.chat.stop_ids), len(row))
            end = min(end, max(1, limit))
            replies.append((row[:end], lps[:end]))
        return replies

    def _sampling_kwargs(self, trainer: Any) -> dict[str, Any]:
        """GRPOConfig's sampling settings, as GRPOTrainer passes them to its own `generate`.

        temperature (ours when set, else the trainer's: TRL scores the tokens at it too), top_p,
        top_k, min_p, repetition_penalty, then `generation_kwargs` over them. The reply's length
        and stop tokens stay the rollout's.
        """
        kwargs: dict[str, Any] = {
            "temperature": self.temperature or getattr(trainer, "temperature", 1.0),
            "top_p": getattr(trainer, "top_p", 1.0),
            "top_k": getattr(trainer, "top_k", 0),
            "min_p": getattr(trainer, "min_p", None),
            "repetition_penalty": getattr(trainer, "repetition_penalty", 1.0),
        }
        kwargs.update(getattr(getattr(trainer, "args", None), "generation_kwargs", None) or {})
        return kwargs

    def _generate_vllm(self, trainer: Any, sequences: list[list[int]], limits: list[int]) -> list[tuple[list[int], list[float]]]:
        # Untested without a GPU. TRL's engine samples up to max_completion_length tokens per call;
        # each reply is cut at its first stop token and at its limit here.
        _, completion_ids, logprobs, _ = trainer.vllm_generation.generate(prompts=sequences, images=None, num_generations=1)
        replies = []
        for ids, lps, limit in zip(completion_ids, logprobs, limits, strict=True):
            lps = [lp[0] if isinstance(lp, (list, tuple)) else lp for lp in lps]
            end = next((k + 1 for k, t in enumerate(ids) if t in self.chat.stop_ids), len(ids))
            end = min(end, max(1, limit))
            replies.append((list(ids[:end]), list(lps[:end])))
        return replies
