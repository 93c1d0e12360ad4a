"""Secrets stay out of specs, reprs and manifests; `redact` is the helper everyone uses."""

from __future__ import annotations

import gymnasium as gym
import pytest

import sage_gym  # noqa: F401  (registers SageDialogue-v0)
from sage_gym.redaction import REDACTED, is_secret_name, redact, redact_text
from sage_gym.servers.simulator_server import run_server_in_thread

SECRET = "sk-test-SECRET-0123456789abcdef"


@pytest.mark.parametrize("name", ["api_key", "API_KEY", "openai_api_key", "x-api-key", "Authorization", "proxy_authorization", "hf_token", "access_token", "client_secret", "password"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["model", "max_tokens", "max_new_tokens", "tokens", "tokenizer", "keys", "sort_key", "pad_token", "base_url", 3])
def test_harmless_names(name):
    assert not is_secret_name(name)


def test_redact_walks_nested_mappings_and_lists_and_copies():
    config = {"model": "m", "simulator_kwargs": {"api_key": SECRET, "headers": {"Authorization": f"Bearer {SECRET}"}}, "judges": [{"token": SECRET}], "api_key": None}
    redacted = redact(config)
    assert SECRET not in repr(redacted) and redacted["simulator_kwargs"]["api_key"] == REDACTED
    assert redacted["judges"][0]["token"] == REDACTED and redacted["api_key"] is None  # "no key" stays visible
    assert config["simulator_kwargs"]["api_key"] == SECRET  # the input is untouched


def test_redact_text():
    assert redact_text(f"Incorrect API key provided: {SECRET}") == "Incorrect API key provided: sk-***"
    assert redact_text("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer ***"
    assert redact_text("key=hunter2-long", ["hunter2-long"]) == "key=***"


def test_env_spec_repr_and_manifest_hold_no_key_and_the_spec_rebuilds_the_env(monkeypatch):
    with run_server_in_thread() as url:
        kwargs = {"base_url": url, "model": "m", "api_key": SECRET, "headers": {"X-Api-Key": SECRET}}
        env = gym.make("SageDialogue-v0", scenarios="eval", simulator="openai", simulator_kwargs=kwargs)
        envs = gym.make_vec("SageDialogue-v0", num_envs=2, scenarios="eval", simulator="openai", simulator_kwargs=kwargs)
        shown = [str(env.spec), repr(env.spec), str(env), str(env.unwrapped.spec), str(envs.spec), str(envs), repr(env.unwrapped.simulator), repr(env.unwrapped.manifest())]
        assert all(SECRET not in text for text in shown)
        assert env.spec.kwargs["simulator_kwargs"]["api_key"] == REDACTED and kwargs["api_key"] == SECRET
        monkeypatch.setenv("SAGE_SIMULATOR_API_KEY", "from-the-environment")
        again = gym.make(env.spec)  # a redacted key reads as "not given": the environment's key is used
        assert ("Authorization", "Bearer from-the-environment") in again.unwrapped.simulator.client._request_headers
        again.reset(seed=0)
        env.close(), envs.close(), again.close()
