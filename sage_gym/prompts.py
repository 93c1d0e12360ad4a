"""Prompt templates (jinja2, in `prompts/`), rendered in a sandbox with strict undefined variables.

Scenario text is passed as *data*: templates interpolate values, they never evaluate them, and the
sandbox forbids attribute tricks, so a persona containing `{{ ... }}` or `{% ... %}` renders
literally and cannot break or inject into a template. Structured values (the profile, the
history, the agent's reply) are rendered as JSON with the `json` filter, which also keeps a
message that imitates a prompt section from being mistaken for one.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Undefined
from jinja2.exceptions import TemplateNotFound, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sage_gym.resources import data_root

AGENT_TEMPLATES = {"think": "agent_think.j2", "direct": "agent_direct.j2"}


class PromptError(ValueError):
    """A template is missing or was rendered without a variable it needs."""


def _to_json(value: Any) -> str:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # raises UndefinedError naming the variable
    # ensure_ascii=False keeps text readable for an LLM (jinja's own tojson HTML-escapes quotes)
    return json.dumps(value, ensure_ascii=False, indent=None)


class PromptLibrary:
    """Renders the templates of one folder (the shipped `prompts/` by default)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else data_root("prompts")
        if not self.folder.is_dir():
            raise PromptError(f"prompt folder not found: {self.folder}")
        self._env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(self.folder)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["json"] = _to_json

    def render(self, name: str, **variables: Any) -> str:
        try:
            return self._env.get_template(name).render(**variables).strip()
        except TemplateNotFound:
            raise PromptError(f"template {name!r} not found in {self.folder}") from None
        except UndefinedError as err:
            raise PromptError(f"template {name!r}: {err.message}") from None

    def sha256(self) -> str:
        """Hash of every template file in the folder (names and bytes): identifies the prompts in manifests."""
        digest = hashlib.sha256()
        for path in sorted(self.folder.glob("*.j2")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def agent_system_prompt(self, template: str = "think", max_reply_words: int | None = None) -> str:
        """The agent's system prompt: `"think"` (think-then-say with <think>...</think>) or `"direct"`."""
        if template not in AGENT_TEMPLATES:
            raise PromptError(f"unknown agent template {template!r}; expected one of {sorted(AGENT_TEMPLATES)}")
        return self.render(AGENT_TEMPLATES[template], max_reply_words=max_reply_words)


@lru_cache(maxsize=None)
def default_prompts() -> PromptLibrary:
    return PromptLibrary()
