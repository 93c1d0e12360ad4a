"""verl's tool agent loop, with every reply sent to the interaction: the last one included.

verl 0.7's `ToolAgentLoop` stops generating on its own limits (`response_length` tokens for the
whole dialogue, `multi_turn.max_assistant_turns`, `max_user_turns`) right after a reply, before
the interaction sees it: that reply is trained but never scored, and the env is never told the
dialogue ended. `SageAgentLoop` keeps everything else of `ToolAgentLoop` and, when verl stops on
a limit, sends that last reply to the interaction (the user's answer is not added to the
sequence: nothing after it is trained), then calls `finalize_interaction`, which verl 0.7 never
does. A reply cut by `response_length` is scored as the user would read it: cut.

verl loads it by name from `verl_agent_loop.yaml` (`actor_rollout_ref.rollout.agent.agent_loop_config_path`);
rows of `verl_dataset_rows` name it (`agent_name: sage_agent`). Importing this module imports verl.
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.tool_agent_loop import AgentData, AgentState, ToolAgentLoop


class SageAgentLoop(ToolAgentLoop):
    """`ToolAgentLoop` that scores the reply verl stopped on (see the module docstring)."""

    async def _handle_generating_state(self, agent_data: AgentData, sampling_params: dict[str, Any], ignore_termination: bool = False) -> AgentState:
        state = await super()._handle_generating_state(agent_data, sampling_params, ignore_termination)
        # With an interaction, the only way out of the generating state to TERMINATED is one of
        # verl's limits, checked before the reply is passed on.
        if state == AgentState.TERMINATED and agent_data.interaction is not None:
            await self._score_last_reply(agent_data)
        return state

    async def _score_last_reply(self, agent_data: AgentData) -> None:
        reply = await self.loop.run_in_executor(None, lambda: self.tokenizer.decode(agent_data.response_ids, skip_special_tokens=True))
        agent_data.messages.append({"role": "assistant", "content": reply})
        _, answer, score, _ = await agent_data.interaction.generate_response(agent_data.request_id, agent_data.messages, **agent_data.interaction_kwargs)
        agent_data.messages.append({"role": "user", "content": answer})
        agent_data.user_turns += 1  # verl's num_turns then counts the answer, as for every other reply
        if score is not None:
            agent_data.turn_scores.append(score)
        await agent_data.interaction.finalize_interaction(agent_data.request_id)
