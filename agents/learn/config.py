"""Training configuration: one dataclass, its command line, and config files (JSON, YAML, TOML).

Every field of `TrainConfig` is a command-line option (`lr` is `--lr`, `group_size` is
`--group-size`, booleans get `--x/--no-x`) whose help text is the field's `help` metadata, so
`--help` documents every option and nothing can drift. Precedence: the defaults, then the file
given with `--config`, then the command line. A config file holds the same names (dashes or
underscores). PPO extends `TrainConfig` with its own fields and reuses `parse_config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agents.cli import UsageError


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its command-line help."""
    return field(default=default, metadata={"help": help, **kwargs})


EMBEDDED_TEMPERATURE = 0.5  # the default run's sampling temperature (docs/training.md, "The embedded default model")


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults: the embedded tiny model on the built-in simulator."""

    # --- model
    model: str | None = option(None, "model folder, hub id, GGUF file, or a named offline model (smollm2-135m, gemma3-270m-gguf; 'list' prints them), whose training preset then sets the options not given; default: the embedded tiny chat model, built offline and cached")
    gguf_file: str | None = option(None, "GGUF file to load (inside --model's folder, or an absolute path); converted once and cached")
    tokenizer: str | None = option(None, "tokenizer folder or hub id, if not the model's")
    chat_template: str | None = option(None, "override the tokenizer's chat template: a Jinja file, or 'chatml'")
    dtype: str = option("auto", "compute dtype: auto (bfloat16 on a GPU, float32 on CPU), float32, bfloat16, float16 (weights too, unless --mixed-precision keeps them float32)", choices=("auto", "float32", "bfloat16", "float16"))
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    mixed_precision: bool = option(True, "with a bfloat16/float16 --dtype (the GPU default): keep float32 weights and optimizer state for a full fine-tune and compute in the low dtype (autocast; FSDP2: MixedPrecisionPolicy); --no-mixed-precision keeps the weights in the low dtype (half the memory, but in bfloat16 an update below ~1/256 of a weight is rounded away). LoRA adapters are float32 either way")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory, about 30%% more compute)")
    lora: bool = option(False, "train LoRA adapters (peft) instead of all weights; the KL reference is then the base model with adapters off")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    lora_dropout: float = option(0.0, "LoRA dropout")
    lora_target_modules: str = option("all-linear", "LoRA target modules: all-linear, or comma-separated names (q_proj,v_proj)")
    trust_remote_code: bool = option(False, "allow model code from the hub")

    # --- environment
    simulator: str = option("builtin", "simulated user: builtin (deterministic, offline) or openai (any OpenAI-compatible endpoint)", choices=("builtin", "openai"))
    simulator_base_url: str | None = option(None, "simulator endpoint, e.g. http://localhost:8000/v1 (env SAGE_SIMULATOR_BASE_URL); the key comes from SAGE_SIMULATOR_API_KEY or OPENAI_API_KEY")
    simulator_model: str | None = option(None, "simulator model name (env SAGE_SIMULATOR_MODEL)")
    simulator_temperature: float | None = option(0.7, "simulator sampling temperature")
    simulator_kwargs: str | None = option(None, "extra simulator arguments as JSON, e.g. '{\"timeout\": 30, \"single_call\": true}'")
    scenarios: str = option("train", "scenario split (train, eval) or a JSONL file")
    scenario_limit: int | None = option(None, "use only the first N scenarios of the set; default: all of them, or the 16 the embedded tiny model was warm-started on")
    max_turns: int = option(6, "agent replies per dialogue (RLVER trained with 8, SAGE evaluates 10)")
    initial_emotion: int = option(40, "the simulated user's starting emotion (SAGE 40, RLVER training 30)")
    reward_mode: str = option("delta", "delta: (e_t - e_{t-1})/100 per turn; final: e_T/100 at the end (RLVER)", choices=("delta", "final"))
    template: str = option("direct", "agent system prompt: think (think-then-say, <think>...</think>) or direct", choices=("think", "direct"))
    max_concurrency: int = option(64, "simulator calls in flight at once")
    transcripts: bool = option(True, "record every dialogue to <output-dir>/transcripts.jsonl")
    max_dropped_share: float = option(0.2, "warn, every time, when a step drops more than this share of its dialogues to simulator errors (a step that drops all of them stops the run)")

    # --- held-out evaluation (agents/learn/held_out.py)
    eval_every: int = option(0, "evaluate the policy (greedy, SAGE settings) on held-out scenarios every N steps, logging eval/score, eval/train_score and eval/gap; it is also evaluated before the first step and after the last whenever --eval-limit is above 0; 0: only then")
    eval_scenarios: str = option("eval", "held-out scenario split (eval, train) or JSONL file")
    eval_limit: int | None = option(None, "held-out scenarios per evaluation (the same number of training scenarios gives eval/train_score); 0 turns held-out evaluation off; default: 16 for the embedded tiny model or with --eval-every, else 0")

    # --- rollout
    group_size: int = option(8, "G: dialogues per scenario (the GRPO group)")
    scenarios_per_step: int = option(4, "B: scenarios per step; a step plays B x G dialogues")
    temperature: float | None = option(None, f"sampling temperature (log-probs are taken at this temperature); default: {EMBEDDED_TEMPERATURE} for the embedded tiny model, 1.0 otherwise")
    top_p: float = option(1.0, "nucleus sampling mass")
    max_new_tokens: int = option(64, "most tokens the policy may write in one turn (thinking included)")
    max_seq_len: int = option(2048, "length budget of a whole dialogue in tokens (see --overlong)")
    overlong: str = option("mask", "dialogues over --max-seq-len: mask (no gradient, kept in the group baseline) or keep (cut and trained)", choices=("mask", "keep"))

    # --- GRPO objective
    adv_norm: str = option("std", "advantage: std (GRPO: divide by the group's std) or none (Dr. GRPO)", choices=("std", "none"))
    loss_agg: str = option("token-mean", "loss aggregation: token-mean, seq-mean-token-mean (GRPO), seq-mean-token-sum-norm (Dr. GRPO)", choices=("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"))
    clip_low: float = option(0.2, "ratio clip below: 1 - clip_low")
    clip_high: float = option(0.28, "ratio clip above: 1 + clip_high (DAPO's clip-higher; 0.2 is symmetric PPO)")
    beta: float = option(0.0, "KL coefficient to the frozen reference; 0 (RLVER's choice) loads no reference")
    kl_estimator: str = option("k3", "KL estimator: k1, k2 or k3", choices=("k1", "k2", "k3"))

    # --- optimisation
    steps: int = option(50, "training steps (each: one rollout, then the update)")
    epochs: int = option(1, "passes over each step's dialogues")
    minibatches: int = option(2, "optimizer steps per epoch (the dialogues are split into this many mini-batches)")
    micro_batch_tokens: int = option(8192, "padded tokens per forward/backward micro-batch (gradient accumulation)")
    lr: float | None = option(None, "learning rate; default 3e-4 for the embedded tiny model, 1e-6 otherwise")
    weight_decay: float = option(0.0, "AdamW weight decay")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.99, "AdamW beta2")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 disables)")
    warmup_steps: int = option(3, "optimizer steps of linear warm-up")
    lr_schedule: str = option("constant", "after warm-up: constant, cosine or linear decay", choices=("constant", "cosine", "linear"))
    min_lr_ratio: float = option(0.1, "cosine/linear decay ends at lr * min_lr_ratio")

    # --- scale (see docs/scaling.md)
    parallel: str = option("ddp", "under torchrun: ddp (every rank holds the whole model) or fsdp2 (weights, gradients and optimizer state sharded over ranks)", choices=("ddp", "fsdp2"))
    rollout_engine: str = option("hf", "what generates the rollouts: hf (the policy itself, any device) or vllm (a colocated vLLM engine synced after every update; the [vllm] extra and a CUDA GPU)", choices=("hf", "vllm"))
    vllm_gpu_memory_utilization: float = option(0.3, "share of the GPU's memory the vLLM engine may take (weights + KV cache); the rest is the learner's")

    # --- run
    seed: int = option(0, "seed of everything random (scenarios, simulator, sampling, batching)")
    output_dir: str | None = option(None, "where metrics, TensorBoard logs, transcripts, checkpoints and the learning curve go; default: a new folder runs/grpo/<YYYYmmdd-HHMMSS> for every run, with runs/grpo/latest pointing at it. A folder that holds a run already is refused unless --resume or --overwrite")
    overwrite: bool = option(False, "delete what --output-dir holds before the run starts")
    save_every: int = option(10, "checkpoint every N steps (and at the end); 0: only at the end")
    keep_checkpoints: int = option(2, "checkpoints kept on disk (oldest removed)")
    resume: str | None = option(None, "continue a run: 'auto' (the latest checkpoint of --output-dir, default: of runs/grpo/latest; the configuration must match the run's) or a checkpoint folder")
    tensorboard: bool = option(True, "write TensorBoard scalars to <output-dir>/tensorboard")
    progress: bool = option(True, "show a progress bar")
    threads: int | None = option(None, "torch CPU threads; default: 1 for the embedded tiny model on CPU (its many small ops lose more to thread synchronisation than they gain, badly so on shared cores), torch's choice otherwise")

    @property
    def embedded_model(self) -> bool:
        return self.model is None and self.gguf_file is None

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 3e-4 if self.embedded_model else 1e-6

    def resolved_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        # the tiny model's samples at 1.0 are often garbled (mis-copied words, spliced templates),
        # which the built-in user rightly punishes; cooler samples leave GRPO the choice it can
        # learn, which strategies to use for whom
        return EMBEDDED_TEMPERATURE if self.embedded_model else 1.0

    def resolved_threads(self) -> int | None:
        if self.threads is not None:
            return self.threads
        return 1 if self.embedded_model and self.device in ("auto", "cpu") and not _cuda() else None

    def resolved_scenario_limit(self) -> int | None:
        if self.scenario_limit is not None:
            return self.scenario_limit
        if self.embedded_model:
            from agents.learn.tiny_model import TinyModelSpec

            return TinyModelSpec().scenario_limit
        return None

    def resolved_eval_limit(self) -> int:
        if self.eval_limit is not None:
            return self.eval_limit
        return 16 if self.embedded_model or self.eval_every > 0 else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def redacted_dict(self) -> dict[str, Any]:
        """`to_dict()` fit to write or print: secrets (an `api_key` in `--simulator-kwargs`, any
        `*_key`, `*token`, `authorization` or header of that name) replaced by "<redacted>"."""
        from sage_gym.redaction import redact

        values = redact(self.to_dict())
        if isinstance(values.get("simulator_kwargs"), str):
            try:
                extra = json.loads(values["simulator_kwargs"])
            except ValueError:
                extra = None  # not JSON: the run refuses it anyway, and nothing in it can be told apart
            values["simulator_kwargs"] = json.dumps(redact(extra)) if isinstance(extra, dict) else "<redacted>"
        return values


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------------------------
# command line


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(the scalar type, whether None is allowed) of a field annotation like `int | None`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _hints(config_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(config_cls)


def build_parser(config_cls: type = TrainConfig, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="JSON, YAML or TOML file of options (command-line options override it)")
    hints = _hints(config_cls)
    for f in fields(config_cls):
        kind, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text + f" (default: {f.default})"}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, type=kind, metavar=kind.__name__.upper(), **kwargs)
    return parser


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a .json, .yaml/.yml or .toml file (keys with dashes or underscores)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(text)
    elif suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    elif suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        data = tomllib.loads(text)
    else:
        raise UsageError(f"config file {path} must end in .json, .yaml, .yml or .toml")
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def make_config(config_cls: type = TrainConfig, values: dict[str, Any] | None = None) -> Any:
    """A config from a dict of values, checking names and types (ints where ints belong...)."""
    values = dict(values or {})
    known = {f.name: f for f in fields(config_cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UsageError(f"unknown option(s) {unknown}; see --help for the list")
    hints = _hints(config_cls)
    checked = {}
    for name, value in values.items():
        kind, optional = _base_type(hints[name])
        if value is None:
            if not optional:
                raise UsageError(f"option {name} cannot be null")
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UsageError(f"option {name} must be {kind.__name__}, got {value!r}")
        choices = known[name].metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise UsageError(f"option {name} must be one of {list(choices)}, got {value!r}")
        checked[name] = value
    return config_cls(**checked)


def parse_config(argv: list[str] | None = None, config_cls: type = TrainConfig, prog: str | None = None, description: str | None = None) -> Any:
    """Defaults, then a named model's training preset, then `--config FILE`, then the command line.
    `--model list` prints the named models and exits."""
    parser = build_parser(config_cls, prog=prog, description=description)
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = args.pop("config", None)
    if config_file:
        values.update(load_config_file(config_file))
    values.update(args)
    from agents.policy.models import model_table, named_model

    if values.get("model") == "list":
        print(model_table())
        raise SystemExit(0)
    named = named_model(values.get("model"))
    if named is not None:
        values = {**named.train_preset, **values}
    try:
        return make_config(config_cls, values)
    except ValueError as error:
        parser.error(str(error))
