"""GRPO on the Chinese training split: it runs, and every reward comes from the built-in user's Chinese rules."""

from __future__ import annotations

import json
import re

from agents.learn.config import TrainConfig
from agents.learn.grpo import GRPO
from agents.policy.model import Policy
from agents.learn.tiny_model import system_prompts, tiny_random_model, tokenizer_corpus, train_tokenizer
from agents.learn.trainer import Trainer
from sage_gym.scenarios import load_split
from sage_gym.simulators.builtin import analyse_reply, reply_language
from tests.tiny import SMALL, one_thread  # noqa: F401  (fixture)

HAN = re.compile(r"[\u4e00-\u9fff]")


def test_grpo_on_train_zh_runs_and_is_rewarded_by_the_chinese_user(tmp_path):
    # a tokenizer that knows Chinese, so the random policy writes Chinese as well as English pieces
    tokenizer = train_tokenizer(tokenizer_corpus([], split="train-zh"), 1024)
    policy = Policy.from_model(tiny_random_model(tokenizer, SMALL, seed=0), tokenizer, system_prompt=system_prompts()["direct"])
    cfg = TrainConfig.from_options(
        model="in-memory", template="direct", scenarios="train-zh", steps=2, group_size=2, scenarios_per_step=2, max_turns=2,
        max_new_tokens=12, lr=1e-3, output_dir=str(tmp_path / "run"), save_every=0, progress=False, tensorboard=False, transcripts=True,
    )
    trainer = Trainer(cfg, algorithm=GRPO, policy=policy)
    history = trainer.fit()
    trainer.close()
    assert len(history) == 2

    scenarios = {s.id: s for s in load_split("train-zh")}
    dialogues = [json.loads(line) for line in (tmp_path / "run" / "transcripts.jsonl").open(encoding="utf-8")]
    assert len(dialogues) == 2 * 2 * 2
    judged_in = set()
    for dialogue in dialogues:
        scenario = scenarios[dialogue["scenario_id"]]
        seen = [{"role": "user", "content": dialogue["first_message"]}]
        for turn in dialogue["turns"]:
            reply, analysis = turn["agent_reply"], turn["analysis"]
            assert HAN.search(turn["user_reply"]) and analysis["meaning"].startswith("对方")  # the user answers and thinks in Chinese
            # the judgement is the Chinese rules' own, recomputed from the visible dialogue
            features = analyse_reply(scenario, seen, reply)
            assert (analysis["strategies"], analysis["flags"]) == (sorted(features.strategies), sorted(features.flags))
            assert ("wrong_language" in analysis["flags"]) == (reply_language(reply) == "en")
            judged_in.add("wrong_language" if "wrong_language" in analysis["flags"] else "zh")
            assert abs(turn["reward"] - turn["change"] / 100) < 1e-9
            seen += [{"role": "assistant", "content": reply}, {"role": "user", "content": turn["user_reply"]}]
    assert judged_in == {"zh", "wrong_language"}  # both halves of the Chinese rules were exercised
