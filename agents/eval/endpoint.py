"""One chat model behind an OpenAI-compatible endpoint: the transport the `openai` agent and the LLM strategy judge share."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any


class AgentError(RuntimeError):
    """An agent could not produce a reply (for example its endpoint kept failing)."""


class ChatEndpoint:
    """One OpenAI-compatible chat endpoint: retried requests, a concurrency limit, no key in errors.

    The `AsyncOpenAI` client is made lazily for the running event loop (a client is bound to the
    loop it was created on). Each request is retried `max_retries` times with exponential backoff
    and jitter (tenacity; the SDK's own retries are off) on any failure, including an empty or
    unusable answer when `parse` raises; then `AgentError` names the endpoint, the model and the
    last cause.
    """

    def __init__(
        self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0, max_retries: int = 3, max_concurrency: int = 32
    ) -> None:
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.timeout, self.max_retries, self.max_concurrency = float(timeout), int(max_retries), int(max_concurrency)
        self._clients: dict[int, tuple[Any, asyncio.Semaphore]] = {}

    def _client(self) -> tuple[Any, asyncio.Semaphore]:
        from openai import AsyncOpenAI

        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            client = AsyncOpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env) or "EMPTY", timeout=self.timeout, max_retries=0)
            self._clients[loop] = (client, asyncio.Semaphore(self.max_concurrency))
        return self._clients[loop]

    async def complete(self, messages: Sequence[Mapping[str, str]], parse: Any = None, **sampling: Any) -> Any:
        """The assistant's answer to `messages` (passed through `parse` when given)."""
        from tenacity import AsyncRetrying, stop_after_attempt, wait_random_exponential

        client, limit = self._client()
        try:
            async with limit:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.max_retries + 1), wait=wait_random_exponential(multiplier=0.5, max=8), reraise=True
                ):
                    with attempt:
                        response = await client.chat.completions.create(model=self.model, messages=list(messages), **sampling)
                        text = response.choices[0].message.content
                        if text is None:
                            raise ValueError("the endpoint returned no message content")
                        return parse(text) if parse is not None else text
        except Exception as error:
            raise AgentError(
                f"{self.model!r} at {self.base_url} failed after {self.max_retries + 1} attempts: {type(error).__name__}: {error}"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def manifest(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "timeout": self.timeout, "max_retries": self.max_retries}
