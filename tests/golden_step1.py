"""Golden values of step 1 of the default GRPO and PPO runs: every metric it logs, and its saved weights.

`python -m agents.train_grpo --steps 1` and `python -m agents.train_ppo --steps 1` (the embedded
tiny model, the built-in user, every other option at its default) are run into a temporary
folder, and so are two variants that cover what the defaults leave out (a KL reference, PPO's
head critic; see `RUNS`). What step 1 logged (`metrics.jsonl`, timings left out) and a sha256
of the weights it saved (the policy, and PPO's critic) are compared with
`tests/data/golden_step1.json`: metrics to 1e-6, hashes exactly.

    python -m tests.golden_step1            # run both, compare, print the differences
    python -m tests.golden_step1 --write    # run both and record them (after a deliberate change)

A refactor of the learner must leave these values as they are (on one machine: another CPU or
torch build may differ in the last bits). `tests/test_golden_step1.py` runs the comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from agents.learn.checkpoint import checkpoint_dir

GOLDEN = Path(__file__).parent / "data" / "golden_step1.json"
TOLERANCE = 1e-6  # metrics; the weights' hashes must match exactly
TIMINGS = ("_seconds", "_per_s", "/seconds")  # wall-clock metrics differ from run to run
# name -> (command, options beyond `--steps 1`). The two defaults, then the paths they leave out:
# a KL reference (beta is 0 by default) and PPO's head critic (which reads the policy's hidden states)
RUNS = {
    "grpo": ("grpo", []),
    "ppo": ("ppo", []),
    "grpo_kl": ("grpo", ["--beta", "0.04", "--eval-limit", "0"]),
    "ppo_head": ("ppo", ["--critic", "head", "--eval-limit", "0"]),
}


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order (independent of the file format)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def step_one(algorithm: str, options: list[str], output_dir: Path) -> dict[str, Any]:
    """Run `python -m agents.train_<algorithm> --steps 1 <options>` into `output_dir`; its step-1 metrics and weight hashes."""
    if algorithm == "grpo":
        from agents.train_grpo import main
    else:
        from agents.train_ppo import main
    main(["--steps", "1", *options, "--output-dir", str(output_dir), "--no-progress", "--no-tensorboard"])
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    (row,) = [r for r in rows if r.get("step") == 1]
    metrics = {k: v for k, v in sorted(row.items()) if isinstance(v, (int, float)) and not k.endswith(TIMINGS)}
    checkpoint = checkpoint_dir(output_dir, 1)
    weights = {"policy": tensors_sha256(load_file(str(checkpoint / "policy" / "model.safetensors")))}
    state = torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=False)
    if "critic" in state:
        weights["critic"] = tensors_sha256(state["critic"]["weights"])
    return {"metrics": metrics, "weights_sha256": weights}


def record(names: list[str] | None = None) -> dict[str, Any]:
    """The step-1 values of `names` (default: every run of `RUNS`), each run in its own temporary folder."""
    out = {}
    for name in names or list(RUNS):
        algorithm, options = RUNS[name]
        with tempfile.TemporaryDirectory() as folder:
            out[name] = step_one(algorithm, options, Path(folder) / name)
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= TOLERANCE
    return bool(a == b)


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """One line per value that differs (metrics beyond the tolerance, any hash, a value missing on either side)."""
    lines = []
    for algorithm in sorted(set(expected) | set(actual)):
        want, got = expected.get(algorithm, {}), actual.get(algorithm, {})
        for section in ("metrics", "weights_sha256"):
            a, b = want.get(section, {}), got.get(section, {})
            for key in sorted(set(a) | set(b)):
                if key not in a or key not in b or not same(a[key], b[key]):
                    lines.append(f"{algorithm} {section} {key}: golden {a.get(key, '(missing)')}, now {b.get(key, '(missing)')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden_step1", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="record the values into tests/data/golden_step1.json")
    args = parser.parse_args(argv)
    actual = record()
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    diff = differences(json.loads(GOLDEN.read_text()), actual)
    print("\n".join(diff) if diff else "step 1 of GRPO and PPO matches the golden values")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
