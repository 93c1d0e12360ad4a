"""Training configuration: named groups of options, their command line, and config files (JSON, YAML, TOML).

`TrainConfig` holds six groups, each a frozen dataclass: `model` (the policy and how it is loaded
and placed), `env` (the simulated user and the scenarios), `rollout` (what a step plays and how it
is sampled), `objective` (the policy loss), `optimizer` (epochs, batching, AdamW and its schedule)
and `run` (steps, seed, folder, checkpoints, logging, held-out evaluation). Code reads `cfg.optimizer.lr`.

Every field of a group is a command-line option named by the field alone (`lr` is `--lr`,
`group_size` is `--group-size`, booleans get `--x/--no-x`) whose help text is the field's `help`
metadata, so `--help` documents every option and nothing can drift; option names are unique
across groups. Precedence: the defaults, then the file given with `--config`, then the command
line. A config file holds the groups, each a mapping of its options (dashes or underscores):

    run: {steps: 200}
    optimizer: {lr: 1.0e-5}
    model: {model: Qwen/Qwen2.5-0.5B-Instruct, lora: true}

The flat form of earlier versions (`lr: 1.0e-5` at the top level) still loads, with a
DeprecationWarning naming the file; so does a flat `config.json` of an earlier run under `--resume`.
PPO extends the groups with its own fields (`agents.learn.ppo.PPOConfig`) and reuses `parse_config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agents.cli import UsageError
from agents.options import add_options, base_type, option

__all__ = [
    "EMBEDDED_TEMPERATURE", "GROUPS", "EnvConfig", "ModelConfig", "ObjectiveConfig", "OptimizerConfig", "RolloutConfig", "RunConfig",
    "TrainConfig", "build_parser", "flat_options", "load_config_file", "make_config", "option", "parse_config",
]  # fmt: skip

EMBEDDED_TEMPERATURE = 0.5  # the default run's sampling temperature (docs/training.md, "The embedded default model")
EMBEDDED_EVAL_LIMIT = 96  # the default run's held-out check: every user of the eval split
GROUPS = ("model", "env", "rollout", "objective", "optimizer", "run")


@dataclass(frozen=True)
class ModelConfig:
    """The policy: which model, how it is loaded, trained (all weights or LoRA) and placed on devices."""

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
    parallel: str = option("ddp", "under torchrun: ddp (every rank holds the whole model) or fsdp2 (weights, gradients and optimizer state sharded over ranks)", choices=("ddp", "fsdp2"))
    template: str = option("direct", "agent system prompt: think (think-then-say, <think>...</think>) or direct", choices=("think", "direct"))


@dataclass(frozen=True)
class EnvConfig:
    """The environment the policy plays: the simulated user, the scenarios and the dialogue's rules."""

    simulator: str = option("builtin", "simulated user: builtin (deterministic, offline), builtin-v1 (the built-in user calibrated on SAGE's judgments, opt-in) or openai (any OpenAI-compatible endpoint)", choices=("builtin", "builtin-v1", "openai"))
    simulator_base_url: str | None = option(None, "simulator endpoint, e.g. http://localhost:8000/v1 (env SAGE_SIMULATOR_BASE_URL); the key comes from SAGE_SIMULATOR_API_KEY or OPENAI_API_KEY")
    simulator_model: str | None = option(None, "simulator model name (env SAGE_SIMULATOR_MODEL)")
    simulator_temperature: float | None = option(0.7, "simulator sampling temperature")
    simulator_kwargs: str | None = option(None, "extra simulator arguments as JSON, e.g. '{\"timeout\": 30, \"single_call\": true}'")
    scenarios: str = option("train", "scenario split (train, eval) or a JSONL file")
    scenario_limit: int | None = option(None, "use only the first N scenarios of the set (default: all of them)")
    max_turns: int = option(6, "agent replies per dialogue (RLVER trained with 8, SAGE evaluates 10)")
    initial_emotion: int = option(40, "the simulated user's starting emotion (SAGE 40, RLVER training 30)")
    reward_mode: str = option("delta", "delta: (e_t - e_{t-1})/100 per turn; final: e_T/100 at the end (RLVER)", choices=("delta", "final"))
    max_concurrency: int = option(64, "simulator calls in flight at once")
    max_dropped_share: float = option(0.2, "warn, every time, when a step drops more than this share of its dialogues to simulator errors (a step that drops all of them stops the run)")


@dataclass(frozen=True)
class RolloutConfig:
    """What a step plays and how the policy samples it."""

    group_size: int = option(8, "G: dialogues per scenario (the GRPO group)")
    scenarios_per_step: int = option(4, "B: scenarios per step; a step plays B x G dialogues")
    temperature: float | None = option(None, f"sampling temperature (log-probs are taken at this temperature); default: {EMBEDDED_TEMPERATURE} for the embedded tiny model, 1.0 otherwise")
    top_p: float = option(1.0, "nucleus sampling mass")
    max_new_tokens: int = option(64, "most tokens the policy may write in one turn (thinking included)")
    max_seq_len: int = option(2048, "length budget of a whole dialogue in tokens (see --overlong)")
    overlong: str = option("mask", "dialogues over --max-seq-len: mask (no gradient, kept in the group baseline) or keep (cut and trained)", choices=("mask", "keep"))
    rollout_engine: str = option("hf", "what generates the rollouts: hf (the policy itself, any device) or vllm (a colocated vLLM engine synced after every update; the [vllm] extra and a CUDA GPU)", choices=("hf", "vllm"))
    vllm_gpu_memory_utilization: float = option(0.3, "share of the GPU's memory the vLLM engine may take (weights + KV cache); the rest is the learner's")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The policy loss: advantages, clipping, the KL to the reference."""

    adv_norm: str = option("std", "advantage: std (GRPO: divide by the group's std) or none (Dr. GRPO)", choices=("std", "none"))
    loss_agg: str = option("token-mean", "loss aggregation: token-mean, seq-mean-token-mean (GRPO), seq-mean-token-sum-norm (Dr. GRPO)", choices=("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"))
    clip_low: float = option(0.2, "ratio clip below: 1 - clip_low")
    clip_high: float = option(0.28, "ratio clip above: 1 + clip_high (DAPO's clip-higher; 0.2 is symmetric PPO)")
    beta: float = option(0.0, "KL coefficient to the frozen reference; 0 (RLVER's choice) loads no reference")
    kl_estimator: str = option("k3", "KL estimator: k1, k2 or k3", choices=("k1", "k2", "k3"))


@dataclass(frozen=True)
class OptimizerConfig:
    """How the weights move: epochs and batching of each step, AdamW and its schedule."""

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


@dataclass(frozen=True)
class RunConfig:
    """The run around the learner: its length, seed, folder, checkpoints, logging and held-out evaluation."""

    steps: int = option(50, "training steps (each: one rollout, then the update)")
    seed: int = option(0, "seed of everything random (scenarios, simulator, sampling, batching)")
    output_dir: str | None = option(None, "where metrics, TensorBoard logs, transcripts, checkpoints and the learning curve go; default: a new folder runs/grpo/<YYYYmmdd-HHMMSS> for every run, with runs/grpo/latest pointing at it. A folder that holds a run already is refused unless --resume or --overwrite")
    overwrite: bool = option(False, "delete what --output-dir holds before the run starts")
    save_every: int = option(10, "checkpoint every N steps (and at the end); 0: only at the end")
    keep_checkpoints: int = option(2, "checkpoints kept on disk (oldest removed)")
    resume: str | None = option(None, "continue a run: 'auto' (the latest checkpoint of --output-dir, default: of runs/grpo/latest; the configuration must match the run's) or a checkpoint folder")
    tensorboard: bool = option(True, "write TensorBoard scalars to <output-dir>/tensorboard")
    progress: bool = option(True, "show a progress bar")
    threads: int | None = option(None, "torch CPU threads; default: 1 for the embedded tiny model on CPU (its many small ops lose more to thread synchronisation than they gain, badly so on shared cores), torch's choice otherwise")
    eval_every: int = option(0, "evaluate the policy (greedy, SAGE settings) on held-out scenarios every N steps, logging eval/score, eval/train_score and eval/gap; it is also evaluated before the first step and after the last whenever --eval-limit is above 0; 0: only then")
    eval_scenarios: str = option("eval", "held-out scenario split (eval, train) or JSONL file")
    eval_limit: int | None = option(None, "held-out scenarios per evaluation (the same number of training scenarios gives eval/train_score); 0 turns held-out evaluation off; default: 96, the whole eval split, for the embedded tiny model; 16 with --eval-every; else 0")
    transcripts: bool = option(True, "record every dialogue to <output-dir>/transcripts.jsonl")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, in groups. Defaults: the embedded tiny model on the built-in simulator.

    `TrainConfig.from_options(lr=1e-5, steps=10)` builds one from option names, checked as a config file's are.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_options(cls, **options: Any) -> Any:
        """A config from option names (`lr=...`, `group_size=...`), checked: `make_config(cls, options)`."""
        return make_config(cls, options)

    def replace(self, **options: Any) -> Any:
        """A copy with these options (by name, whatever their group) changed."""
        changed = {name: {} for name in GROUPS}
        where = option_groups(type(self))
        for name, value in options.items():
            if name not in where:
                raise UsageError(f"unknown option {name!r}; see --help for the list")
            changed[where[name]][name] = value
        return dataclasses.replace(self, **{g: dataclasses.replace(getattr(self, g), **v) for g, v in changed.items() if v})

    @property
    def embedded_model(self) -> bool:
        return self.model.model is None and self.model.gguf_file is None

    def resolved_lr(self) -> float:
        if self.optimizer.lr is not None:
            return self.optimizer.lr
        return 3e-4 if self.embedded_model else 1e-6

    def resolved_temperature(self) -> float:
        if self.rollout.temperature is not None:
            return self.rollout.temperature
        # the tiny model's samples at 1.0 are often garbled (mis-copied words, spliced templates),
        # which the built-in user rightly punishes; cooler samples leave GRPO the choice it can
        # learn, which strategies to use for whom
        return EMBEDDED_TEMPERATURE if self.embedded_model else 1.0

    def resolved_threads(self) -> int | None:
        if self.run.threads is not None:
            return self.run.threads
        return 1 if self.embedded_model and self.model.device in ("auto", "cpu") and not _cuda() else None

    def resolved_eval_limit(self) -> int:
        if self.run.eval_limit is not None:
            return self.run.eval_limit
        if self.embedded_model:
            # the whole eval split: paired over 16 users the untrained -> trained interval is about
            # 6 points wide, over 96 about 2, narrow enough to see the tiny model's gain (+0.5 to +1.5)
            return EMBEDDED_EVAL_LIMIT
        return 16 if self.run.eval_every > 0 else 0

    def to_dict(self) -> dict[str, Any]:
        """The groups, each a dict of its options (what `config.json` holds)."""
        return dataclasses.asdict(self)

    def options(self) -> dict[str, Any]:
        """Every option by its name, without the groups (`{"lr": ..., "group_size": ...}`)."""
        return flat_options(self.to_dict())

    def redacted_dict(self) -> dict[str, Any]:
        """`to_dict()` fit to write or print: secrets (an `api_key` in `--simulator-kwargs`, any
        `*_key`, `*token`, `authorization` or header of that name) replaced by "<redacted>"."""
        from sage_gym.redaction import redact

        values = redact(self.to_dict())
        env = values["env"]
        if isinstance(env.get("simulator_kwargs"), str):
            try:
                extra = json.loads(env["simulator_kwargs"])
            except ValueError:
                extra = None  # not JSON: the run refuses it anyway, and nothing in it can be told apart
            env["simulator_kwargs"] = json.dumps(redact(extra)) if isinstance(extra, dict) else "<redacted>"
        return values


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def group_classes(config_cls: type) -> dict[str, type]:
    """{group name: its dataclass} of a config class (PPO's groups extend GRPO's)."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in fields(config_cls)}


def option_groups(config_cls: type) -> dict[str, str]:
    """{option name: the group that holds it}."""
    return {f.name: group for group, cls in group_classes(config_cls).items() for f in fields(cls)}


def flat_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Options by name from either form of a config: grouped (`{"optimizer": {"lr": ...}}`) or flat
    (`{"lr": ...}`, as config files and `config.json` were written before the groups). No option
    takes a mapping, so a group name whose value is a mapping is a group (`model: {...}`), and
    otherwise an option (`model: Qwen/...`)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in GROUPS and isinstance(value, Mapping):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def is_flat(values: Mapping[str, Any]) -> bool:
    """Whether a config holds an option outside the groups (the form before the groups)."""
    return any(not (key in GROUPS and isinstance(value, Mapping)) for key, value in values.items())


# ----------------------------------------------------------------------------------------------
# command line


def build_parser(config_cls: type = TrainConfig, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """`--config`, then each group's options under its own heading."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="JSON, YAML or TOML file of options (command-line options override it)")
    for name, cls in group_classes(config_cls).items():
        add_options(parser.add_argument_group(f"{name} options", (cls.__doc__ or "").split("\n")[0]), cls, layered=True)
    return parser


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Options by name from a .json, .yaml/.yml or .toml file (keys with dashes or underscores), grouped
    or flat; a flat file warns (DeprecationWarning, naming the file)."""
    path = Path(path)
    data = _read_mapping(path)
    if is_flat(data):
        warnings.warn(
            f"config file {path} lists its options without their groups, which is deprecated: put each under its group "
            f"({', '.join(GROUPS)}; see docs/training.md, 'Config files')",
            DeprecationWarning,
            stacklevel=3,  # the caller of parse_config
        )
    flat = flat_options({_name(k): v for k, v in data.items()})
    return {_name(k): v for k, v in flat.items()}


def _name(key: Any) -> str:
    return str(key).replace("-", "_")


def _read_mapping(path: Path) -> dict[str, Any]:
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
    return data


def make_config(config_cls: type = TrainConfig, values: Mapping[str, Any] | None = None) -> Any:
    """A config from option names and values (grouped or flat), checking names and types (ints where ints belong...)."""
    values = flat_options(values or {})
    where = option_groups(config_cls)
    unknown = sorted(set(values) - set(where))
    if unknown:
        raise UsageError(f"unknown option(s) {unknown}; see --help for the list")
    classes = group_classes(config_cls)
    grouped: dict[str, dict[str, Any]] = {name: {} for name in classes}
    for name, value in values.items():
        group = classes[where[name]]
        grouped[where[name]][name] = _checked(name, value, {f.name: f for f in fields(group)}[name], typing.get_type_hints(group)[name])
    return config_cls(**{name: cls(**grouped[name]) for name, cls in classes.items()})


def _checked(name: str, value: Any, f: dataclasses.Field[Any], annotation: Any) -> Any:
    kind, optional = base_type(annotation)
    if value is None:
        if not optional:
            raise UsageError(f"option {name} cannot be null")
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"option {name} must be {kind.__name__}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise UsageError(f"option {name} must be one of {list(choices)}, got {value!r}")
    return value


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
