"""The chat template as token pieces: what a multi-turn dialogue is grown from, never re-tokenized.

`ChatFormat` renders the tokenizer's chat template once around placeholders and keeps the token
*deltas* a rollout needs: the opening prompt (system + first user message + generation prompt),
the end-of-turn token that closes an agent turn, and the tokens that append a user turn. The
sampler, the loss and the evaluator's Hugging Face agent all build their token ids from these.

Nothing here imports torch: it needs a tokenizer only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PLACEHOLDER = "\u2063SAGE_PLACEHOLDER\u2063"  # text no real message contains: marks where content goes in a template


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


class ChatFormat:
    """The tokenizer's chat template, reduced to the token pieces a multi-turn rollout needs.

    The template is rendered once around placeholders to learn (a) the opening prompt, (b) the
    end-of-turn token that closes an assistant message and (c) the text between that token and
    the next assistant turn (the user turn "delta"). Message contents are tokenized on their own
    with special tokens split, so a user who types `<|im_end|>` cannot forge a turn boundary.
    """

    def __init__(self, tokenizer: Any, system_prompt: str | None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
                "pass --chat-template (a Jinja file, or 'chatml') to give it one"
            )
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []

        opening = _render(tokenizer, system + [{"role": "user", "content": PLACEHOLDER}], True)
        if opening.count(PLACEHOLDER) != 1:
            raise ValueError("the chat template does not render the first user message exactly once")
        self._prompt_parts = opening.split(PLACEHOLDER)

        base = system + [{"role": "user", "content": "hello"}, {"role": "assistant", "content": PLACEHOLDER}]
        with_reply = _render(tokenizer, base, False)
        with_user = _render(tokenizer, base + [{"role": "user", "content": PLACEHOLDER + "2"}], True)
        if not with_user.startswith(with_reply):
            raise ValueError(
                "the chat template re-renders earlier turns when a user turn is added, so turns cannot be "
                "appended as token deltas; use a template whose rendering of a dialogue prefix is stable"
            )
        after_reply = with_reply[with_reply.rindex(PLACEHOLDER) + len(PLACEHOLDER) :]
        self.end_of_turn = self._end_of_turn_token(after_reply)
        self.end_of_turn_id = tokenizer.convert_tokens_to_ids(self.end_of_turn)
        trailing = after_reply[len(self.end_of_turn) :]
        delta = trailing + with_user[len(with_reply) :]
        self._user_parts = delta.split(PLACEHOLDER + "2")
        if len(self._user_parts) != 2:
            raise ValueError("the chat template does not render a user message exactly once")
        # ids are cached: the template pieces never change
        self._prompt_prefix = self._encode(self._prompt_parts[0])
        self._prompt_suffix = self._encode(self._prompt_parts[1])
        self._user_prefix = self._encode(self._user_parts[0])
        self._user_suffix = self._encode(self._user_parts[1])
        stop = {self.end_of_turn_id}
        if tokenizer.eos_token_id is not None:
            stop.add(int(tokenizer.eos_token_id))
        self.stop_ids = tuple(sorted(stop))

    def _end_of_turn_token(self, after_reply: str) -> str:
        """The special token that ends an assistant message (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`...)."""
        specials = set(self.tokenizer.all_special_tokens) | {
            t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)
        }
        matches = [s for s in specials if s and after_reply.startswith(s)]
        if not matches:
            raise ValueError(
                f"cannot find the end-of-turn token: the template writes {after_reply[:40]!r} after an assistant "
                "message, which does not start with a special token"
            )
        return max(matches, key=len)

    def _encode(self, text: str, split_special: bool = False) -> list[int]:
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=split_special)["input_ids"])

    def prompt_ids(self, first_user_message: str) -> list[int]:
        """System prompt + the user's opening message + the assistant generation prompt."""
        return self._prompt_prefix + self._encode(first_user_message, split_special=True) + self._prompt_suffix

    def user_turn_ids(self, user_message: str) -> list[int]:
        """Tokens that follow the agent's end-of-turn token: the user's message and the next generation prompt."""
        return self._user_prefix + self._encode(user_message, split_special=True) + self._user_suffix

    def reply_ids(self, reply: str) -> list[int]:
        """A reply as the model would emit it (content, then end-of-turn); used for supervised warm-start."""
        return self._encode(reply, split_special=True) + [self.end_of_turn_id]

    def decode_reply(self, token_ids: Sequence[int]) -> str:
        """The text of a sampled turn, without its stop token."""
        ids = [t for t in token_ids if t not in self.stop_ids]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def closed_turn(self, token_ids: Sequence[int], stopped: bool) -> list[int]:
        """The ids a sampled turn leaves in the dialogue's context: a turn cut off at its token
        budget gets an end-of-turn token, so the next user delta follows the template."""
        return list(token_ids) if stopped else [*token_ids, self.end_of_turn_id]


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
