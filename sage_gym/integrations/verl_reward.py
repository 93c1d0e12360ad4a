"""verl reward function for SageDialogue: a dialogue's reward is the sum of its turn scores.

Point verl at it with `reward.custom_reward_function.path=<this file>` and
`reward.custom_reward_function.name=compute_score`. verl's agent loop collects the score
`SageInteraction.generate_response` returned for each reply into `turn_scores`, and verl's reward
loop passes them here in `extra_info`. Their sum is the env's return: `(e_T - e_0) / 100` with
`reward_mode: delta`, `e_T / 100` with `final`.

A reply that got no score (a simulator error, or, with verl's plain `tool_agent` loop, the reply
verl stopped on at a limit) is counted in `unscored_replies`, which verl logs with the reward,
and the dialogue is scored on the turns that were. Rows from another data source go to verl's
default scorer. Importing this module does not import verl.
"""

from __future__ import annotations

from typing import Any

DATA_SOURCE = "sage_gym"  # what verl_dataset_rows writes


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, float] | float:
    """The dialogue's return with its counts: `{"score", "replies", "scored_replies", "unscored_replies"}`."""
    if data_source != DATA_SOURCE:
        from verl.utils.reward_score import default_compute_score

        return default_compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
    extra_info = extra_info or {}
    if "turn_scores" not in extra_info or extra_info.get("num_turns") is None:
        raise ValueError("compute_score needs verl's turn_scores and num_turns in extra_info: run the rollout with verl's agent loop and an interaction (docs/integrations.md)")
    turn_scores = [float(score) for score in extra_info["turn_scores"]]
    # verl counts num_turns = user turns + assistant turns + 1 (the prompt); every user turn answers
    # a reply, and at most the last reply has no answer, so the replies are num_turns // 2
    replies = int(extra_info["num_turns"]) // 2
    return {"score": sum(turn_scores), "replies": float(replies), "scored_replies": float(len(turn_scores)), "unscored_replies": float(replies - len(turn_scores))}
