"""Keep secrets out of everything sage_gym writes or shows: specs, manifests, config files, logs.

Secrets are recognised by name, wherever they sit in nested mappings and lists:

| name (case-insensitive)             | examples                                  |
|-------------------------------------|-------------------------------------------|
| `api_key`, anything ending in `key` | `api_key`, `openai_api_key`, `x-api-key`  |
| anything containing `authorization` | `Authorization`, `proxy_authorization`    |
| anything ending in `token`, anything containing `secret` or `password` | `hf_token`, `client_secret` |

    >>> redact({"model": "m", "simulator_kwargs": {"api_key": "sk-123", "headers": {"Authorization": "Bearer x"}}})
    {'model': 'm', 'simulator_kwargs': {'api_key': '<redacted>', 'headers': {'Authorization': '<redacted>'}}}

Token counts (`max_tokens`) do not match; the few harmless names that do (`sort_key`,
`pad_token`...) are listed in `NOT_SECRET`. `redact_text` scrubs free text (an error message a server echoed) of given secret
values, bearer tokens and anything shaped like an OpenAI key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"(?:key|token)$|authorization|secret|password|passwd")
# harmless names that the pattern above would catch
NOT_SECRET = frozenset({"key", "sort_key", "cache_key", "pad_token", "eos_token", "bos_token", "unk_token"})


def is_secret_name(name: Any) -> bool:
    """True for a mapping key that names a secret (`api_key`, `*_key`, `authorization`, `*token`...)."""
    if not isinstance(name, str):
        return False
    normal = name.strip().lower().replace("-", "_")
    return normal not in NOT_SECRET and _SECRET_NAME.search(normal) is not None


def redact(value: Any) -> Any:
    """A copy of `value` (mappings and lists, nested) with every secret-named entry's value replaced by `REDACTED`.

    Other objects are returned as they are (not copied). A secret that is None or empty stays as it
    is, so the output still says that no key was given.
    """
    if isinstance(value, Mapping):
        return {key: (REDACTED if is_secret_name(key) and item not in (None, "") else redact(item)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [redact(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secret values, bearer tokens, or anything shaped like an OpenAI key."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = re.sub(r"(?i)(bearer\s+)[^\s'\",}]+", r"\1***", text)
    return re.sub(r"\bsk-[\w\-*.]{4,}", "sk-***", text)


class RedactedSpec:
    """A `spec` attribute that stores a redacted copy of what is assigned.

    `gymnasium.make` writes the keyword arguments an environment was made with (an API key in
    `simulator_kwargs` among them) into `env.unwrapped.spec`, which `str(env)`, `env.spec` and
    wrappers show. An environment class declares `spec = RedactedSpec()` to keep them out.
    `OpenAISimulator` reads a redacted `api_key` as "not given" (it falls back to the environment
    variable), so `gym.make(env.spec)` still builds the same environment.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_redacted"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return None if obj is None else obj.__dict__.get(self._slot)

    def __set__(self, obj: Any, spec: Any) -> None:
        kwargs = getattr(spec, "kwargs", None)
        if dataclasses.is_dataclass(spec) and not isinstance(spec, type) and isinstance(kwargs, Mapping):
            spec = dataclasses.replace(spec, kwargs=redact(kwargs))
        obj.__dict__[self._slot] = spec
