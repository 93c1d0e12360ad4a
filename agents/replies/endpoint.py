"""One chat model behind an OpenAI-compatible endpoint: the transport the `openai` agent and the LLM judges share.

It is a thin layer over `sage_gym.simulators.client.ChatClient`, the client the LLM simulator
uses too, so the agent, the judges and the simulator retry, time out and keep keys out of their
errors the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agents.cli import UsageError
from sage_gym.simulators.client import ChatAnswer, ChatAuthError, ChatClient, ChatError, Unreadable, answer_text


class AgentError(RuntimeError):
    """An agent could not produce a reply (for example its endpoint kept failing)."""


class AgentAuthError(AgentError, UsageError):
    """The endpoint refused the API key (HTTP 401/403): never retried, and not worth going on without (a usage error: exit 2)."""


class ChatEndpoint:
    """One OpenAI-compatible chat endpoint: retried requests, a concurrency limit, no key in errors or manifests.

    Each request is retried `max_retries` times with exponential backoff and jitter on timeouts,
    connection errors, 408/409/429/5xx, malformed answers, and answers that `parse` rejects (any
    exception it raises); then `AgentError` names the model, the endpoint and the last cause. A
    401 or 403 is never retried: `AgentAuthError` at once. The key is `api_key`, else the
    environment variable `api_key_env` (read when the endpoint is made); `headers` are sent with
    every request. Neither appears in `manifest()` or in any error.

    A reply cut off at `max_tokens` is taken as it is (it is what the model said); for a judge it
    usually fails `parse` and is retried.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        max_concurrency: int = 32,
    ) -> None:
        self.model, self.api_key_env = model, api_key_env
        self.client = ChatClient(
            base_url, api_key or os.environ.get(api_key_env) or None, timeout=timeout, max_retries=max_retries, max_concurrency=max_concurrency, headers=headers
        )
        self.base_url = self.client.endpoint  # without user:password or a query string
        self.timeout, self.max_retries = self.client.timeout, self.client.max_retries

    async def complete(self, messages: Sequence[Mapping[str, str]], parse: Callable[[str], Any] | None = None, **sampling: Any) -> Any:
        """The assistant's answer to `messages` (passed through `parse` when given)."""
        request = {"model": self.model, "messages": [dict(m) for m in messages], **sampling}

        def read(answer: ChatAnswer) -> Any:
            text = answer_text(answer)
            if parse is None:
                return text
            try:
                return parse(text)
            except Exception as error:  # an answer the caller cannot use: ask again
                raise Unreadable(f"{type(error).__name__}: {error}") from None

        try:
            return await self.client.complete(request, read, allow_truncated=True, label=f"{self.model!r} at {self.base_url}")
        except ChatAuthError as error:
            raise AgentAuthError(f"{error} (the key comes from ${self.api_key_env} or api_key=...)") from None
        except ChatError as error:
            raise AgentError(str(error)) from None

    def manifest(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "timeout": self.timeout, "max_retries": self.max_retries}
