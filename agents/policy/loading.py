"""Loading a policy's model: a local folder, a hub id, a GGUF file or a named offline model, with LoRA.

A GGUF file (`gguf_file=`, or a path ending in `.gguf`) is dequantized once by transformers into
a float32 safetensors folder under the cache and read from there afterwards; a named model
(`agents.policy.models`) is its package's GGUF file. LoRA adapters come from `peft`.

transformers, peft and gguf are imported where a model is loaded: they take seconds to import,
and the commands refuse a missing model path in one line before that (`agents.policy.model_path`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents.cli import UsageError
from agents.policy.chat_format import CHATML_TEMPLATE
from agents.policy.model_path import check_model_path
from agents.policy.models import named_model


def cache_root() -> Path:
    """Where built and converted models are cached (`SAGE_GYM_CACHE` or ~/.cache/sage_gym)."""
    return Path(os.environ.get("SAGE_GYM_CACHE", Path.home() / ".cache" / "sage_gym"))


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto" is bfloat16 on a GPU that supports it and float32 otherwise."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def gguf_cache_dir(gguf_path: Path) -> Path:
    """A converted GGUF model is cached under a key of its path, size and modification time."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{gguf_path.stem}-{key}"


def resolve_gguf(model: str | None, gguf_file: str | None) -> tuple[str, str | None]:
    """(model folder or hub id, gguf file name or None). A named model (`agents.policy.models`) is its package's GGUF file."""
    named = named_model(model)
    if named is not None:
        path = named.locate()
        return str(path.parent), path.name
    if gguf_file is None:
        if model is not None and model.endswith(".gguf") and Path(model).is_file():
            return str(Path(model).parent), Path(model).name
        return model or "", None
    path = Path(gguf_file)
    if path.is_absolute() or model is None:
        return str(path.parent), path.name
    return model, gguf_file


def convert_gguf(gguf_path: Path, trust_remote_code: bool = False) -> Path:
    """The float32 safetensors folder of a GGUF file: converted on first use, then read from the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # seconds to import: only once a model is loaded

    cached = gguf_cache_dir(gguf_path)
    if (cached / "config.json").is_file():
        return cached
    try:
        import gguf  # noqa: F401  # the optional `gguf` extra: checked here, where it is needed
    except ImportError:
        raise ImportError("loading a GGUF file needs the `gguf` package: pip install gguf (or 'sage-gym[gguf]')") from None
    # transformers dequantizes the GGUF weights into a regular float32 model (tens of seconds): do it once
    source, name = str(gguf_path.parent), gguf_path.name
    converted = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name, trust_remote_code=trust_remote_code)
    # the weights are plain float32 now, but transformers still marks the model as GGUF-quantized
    # and refuses to save it ("quantized with gguf and is not serializable") until the marks go
    converted.hf_quantizer = None
    converted.is_quantized = False
    converted.quantization_method = None
    if hasattr(converted.config, "quantization_config"):
        del converted.config.quantization_config
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + f".tmp-{os.getpid()}")
    converted.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(cached)
    return cached


def load_pretrained(
    model: str,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype = torch.float32,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """(model, tokenizer) from a folder, a hub id, a GGUF file (converted once, then cached) or a named model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # seconds to import: only once a model is loaded

    source, gguf_name = resolve_gguf(model, gguf_file)
    if gguf_name is not None:
        gguf_path = Path(source) / gguf_name
        if not gguf_path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
        source = str(convert_gguf(gguf_path, trust_remote_code))
    if not source:
        raise UsageError("no model given: pass a folder, a hub id or a GGUF file")
    check_model_path(source)
    if tokenizer:
        check_model_path(tokenizer, "tokenizer")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    loaded = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    tok = AutoTokenizer.from_pretrained(tokenizer or source, **kwargs)
    if named_model(model) is not None:
        # a LoRA adapter trained on it then names the model, not this machine's cache folder
        loaded.name_or_path = model
    return loaded, tok


def prepared_model(
    model: Any, tokenizer: Any, *, device: torch.device, lora: LoraSettings | None = None,
    gradient_checkpointing: bool = False, chat_template: str | None = None,
) -> Any:
    """`model` on `device`, ready to sample and train (KV cache on, checkpointing and LoRA as asked);
    the tokenizer gets `chat_template` ("chatml" or a Jinja file) and a pad token if it has none."""
    if chat_template is not None:
        tokenizer.chat_template = CHATML_TEMPLATE if chat_template == "chatml" else Path(chat_template).read_text()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.config.use_cache = True
    if gradient_checkpointing:
        # non-reentrant checkpointing works with LoRA without forcing input grads
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora is None:
        return model
    from peft import LoraConfig, get_peft_model  # seconds to import: only for a LoRA policy

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora_targets(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def lora_targets(target_modules: str | tuple[str, ...]) -> str | list[str]:
    """peft's `target_modules`: "all-linear", or the comma-separated module names as a list."""
    if isinstance(target_modules, str) and target_modules != "all-linear":
        return [t.strip() for t in target_modules.split(",") if t.strip()]
    return target_modules if isinstance(target_modules, str) else list(target_modules)
