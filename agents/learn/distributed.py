"""torchrun support: the process group, the DDP / FSDP2 wrappers, and whole-model state for checkpoints.

`python -m agents.train_grpo` (and `train_ppo`) run unchanged under `torchrun`: each process
reads RANK / WORLD_SIZE / LOCAL_RANK from the environment, joins the process group (NCCL on
GPUs, gloo on CPUs), and the trainer then

- plays its share of every step's scenarios (whole GRPO groups) and draws the same global
  mini-batch plan as a single process would, so the run does not depend on the number of ranks
  beyond floating-point noise (see `agents.learn.update`);
- computes its loss divided by the *global* token and sequence counts, so the gradient summed
  over ranks is the single-process gradient. DDP and FSDP2 average gradients over ranks, so each
  rank's loss is multiplied by the world size before `backward`;
- wraps the policy (and a PPO critic) with `--parallel ddp` (every rank holds the whole model;
  gradients all-reduced) or `--parallel fsdp2` (`torch.distributed.fsdp.fully_shard` on every
  transformer block and on the root: parameters, gradients and optimizer state are sharded, so
  a model whose training state does not fit one GPU fits N of them);
- keeps every collective in lock-step: a rank with fewer micro-batches than another runs
  zero-weight dummy micro-batches (FSDP2 gathers parameters in every forward, DDP reduces in the
  last backward), and mini-batches that are empty on every rank are skipped on every rank.

Checkpoints hold whole (unsharded) weights and optimizer states keyed by parameter name, written
by rank 0: a run saved with DDP resumes with FSDP2, with another number of ranks, or on one
process. Loading happens before wrapping (weights) and after (optimizer state); every rank reads
the checkpoint, so on several nodes the output folder must be on a shared file system.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from agents.learn.losses import Totals
from agents.learn.metrics import MetricSums
from agents.policy.sharding import gathered as gathered, is_sharded as is_sharded  # re-exported: the learner's names for them

PARALLEL_MODES = ("ddp", "fsdp2")
T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a torchrun job. The defaults are a single process.

    `all_reduce` sums a flat list of floats over ranks, `all_max` takes their maximum and
    `all_gather` collects one picklable object per rank (all None: a single process).
    """

    rank: int = 0
    world_size: int = 1
    all_reduce: Callable[[list[float]], list[float]] | None = None
    all_max: Callable[[list[float]], list[float]] | None = None
    all_gather: Callable[[Any], list[Any]] | None = None
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        return self.all_reduce(values) if self.all_reduce is not None else values

    def max(self, values: list[float]) -> list[float]:
        return self.all_max(values) if self.all_max is not None else values

    def gather(self, value: Any) -> list[Any]:
        return self.all_gather(value) if self.all_gather is not None else [value]

    def loss_weight(self, real: bool) -> float:
        """What a pass's loss is multiplied by before `backward`: the number of ranks for a real pass
        (DDP and FSDP2 average gradients over ranks; each rank's loss is already its share of the
        global sum), 0 for a lock-step dummy pass (see `lockstep`)."""
        return float(self.world_size) if real else 0.0

    def reduce_metrics(self, metrics: MetricSums) -> MetricSums:
        """Sums and counts summed over ranks, maxima maxed: every mean is over the global batch."""
        return metrics.reduce(self.all_reduce, self.all_gather, self.all_max, ranks=self.world_size)


# ----------------------------------------------------------------------------------------------
# the update as single-process code: global mini-batches, global counts, passes in lock-step


@dataclass(frozen=True)
class MiniBatch:
    """One planned optimizer step: this rank's share of a global mini-batch."""

    epoch: int
    index: int  # k-th mini-batch of the epoch
    indices: list[int]  # positions of this rank's episodes in the step's episode list
    global_size: int  # dialogues in the mini-batch over all ranks (0: every rank skips it)

    @property
    def first(self) -> bool:
        """The first optimizer step of the step: the weights are still those that sampled the rollout."""
        return self.epoch == 0 and self.index == 0


def minibatch_plan(dist: Distributed, position: dict[int, int], total: int, epochs: int, parts: int, seed: int) -> list[MiniBatch]:
    """Every planned optimizer step of a training step, alike on every rank.

    `position` maps this rank's trainable dialogues (global indices, out of `total` over all
    ranks) to their places in the rank's episode list. One permutation of the *global*
    trainable dialogues, drawn from `seed`, is cut into `parts` mini-batches per epoch; each rank
    keeps its own dialogues of each part. So the mini-batches are those of a single process, and
    a part that is empty everywhere is seen as such by all.
    """
    flags = [0.0] * total
    for dialogue in position:
        flags[dialogue] = 1.0
    flags = dist.sum(flags)
    global_trainable = [d for d in range(total) if flags[d] > 0]
    rng = np.random.default_rng(seed)
    plan = []
    for epoch in range(epochs):
        order = rng.permutation(global_trainable) if global_trainable else np.zeros(0, dtype=int)
        for k, part in enumerate(np.array_split(order, parts)):
            plan.append(MiniBatch(epoch, k, [position[d] for d in part.tolist() if d in position], len(part)))
    return plan


def global_totals(dist: Distributed, policy_tokens: list[int], norm_tokens: float) -> Totals:
    """The loss normalisers of a mini-batch over all ranks (each rank's loss is its share of the global loss)."""
    tokens, sequences = dist.sum([float(sum(policy_tokens)), float(len(policy_tokens))])
    return Totals(tokens=tokens, sequences=sequences, norm_tokens=norm_tokens)


def lockstep(dist: Distributed, micros: list[T], dummy: Callable[[], T]) -> Iterator[tuple[T, bool]]:
    """(micro-batch, real) for `micros`, then (dummy(), False) until every rank has made as many passes.

    Every forward under FSDP2 gathers parameters and every synced backward under DDP reduces
    gradients: both are collectives, so every rank must run the same number of passes. A dummy
    pass is a real pass of weight 0 (the same graph, so it touches the same weights).
    """
    most = int(dist.max([float(len(micros))])[0]) if dist.is_distributed else len(micros)
    for j in range(most):
        yield (micros[j], True) if j < len(micros) else (dummy(), False)


def accumulating(dist: Distributed, micros: list[T], dummy: Callable[[], T], modules: list[nn.Module]) -> Iterator[tuple[T, bool]]:
    """`lockstep`, for gradient accumulation: gradients of `modules` are reduced across ranks in the
    last pass only. Run each pass's backward inside the loop body: the pass's context is open then."""
    passes = list(lockstep(dist, micros, dummy))
    for j, (micro, real) in enumerate(passes):
        with contextlib.ExitStack() as stack:
            for module in modules:
                stack.enter_context(gradient_sync(module, j == len(passes) - 1))
            yield micro, real


# ----------------------------------------------------------------------------------------------
# the process group


def _reducer(op: Any) -> Callable[[list[float]], list[float]]:
    import torch.distributed as dist

    def reduce(values: list[float]) -> list[float]:
        if not values:
            return []
        # float64 on the backend's device: NCCL reduces CUDA tensors only, gloo CPU tensors
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=op)
        return tensor.cpu().tolist()

    return reduce


def _gather(value: Any) -> list[Any]:
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def init_distributed(device: str = "auto") -> Distributed:
    """Join the torchrun job described by the environment; a single process when WORLD_SIZE is unset or 1.

    On GPUs each rank takes the GPU of its LOCAL_RANK and the backend is NCCL; on CPUs (or with
    `device` cpu) it is gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) visible: start at most one process per GPU")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(
        rank=rank, world_size=world_size, all_reduce=_reducer(dist.ReduceOp.SUM), all_max=_reducer(dist.ReduceOp.MAX),
        all_gather=_gather, local_rank=local_rank,
    )


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # every rank leaves together: a rank that tears its group down while rank 0 is still
        # writing the last checkpoint can abort in the transport's threads
        dist.barrier()
        dist.destroy_process_group()


def rank_device(device: str, dist: Distributed) -> torch.device:
    """The device a rank trains on: "auto" is the GPU if there is one; under torchrun a rank's own GPU."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank if dist.is_distributed else torch.cuda.current_device())
    return torch.device("cpu" if device == "auto" else device)


# ----------------------------------------------------------------------------------------------
# wrappers


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Hugging Face model (the classes it names in `_no_split_modules`; none for a value head)."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def wrap_module(module: nn.Module, parallel: str, dist: Distributed, device: torch.device, compute_dtype: torch.dtype | None = None) -> nn.Module:
    """The module the loss should call: DDP around `module`, or `module` itself sharded in place by FSDP2.

    Single process: `module` unchanged. Under FSDP2 the module keeps its identity (fully_shard
    changes it in place) and its parameters become sharded DTensors on `device`, so build the
    optimizer after this; with a low `compute_dtype` the shards keep their dtype (float32 master
    weights) while the gathered parameters are in `compute_dtype` and gradients are reduced in
    float32.
    """
    if not dist.is_distributed:
        return module
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {parallel!r}")
    if not any(p.requires_grad for p in module.parameters()):
        return module  # frozen (a KL reference under DDP): nothing to synchronise
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        module.to(device)
        # no buffer sync in forward: rotary caches and the like are not state, and a broadcast in
        # every forward would need the same number of forwards on every rank (torch >= 2.13 names
        # the option forward_sync_buffers; older releases broadcast_buffers)
        import inspect

        option = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers"
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None, **{option: False})
    return _fully_shard(module, dist, device, compute_dtype)


def _fully_shard(module: nn.Module, dist: Distributed, device: torch.device, compute_dtype: torch.dtype | None) -> nn.Module:
    """FSDP2 on every transformer block, then on the root (embeddings, final norm, output layer)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.world_size,))
    options: dict[str, Any] = {"mesh": mesh}
    if compute_dtype is not None and compute_dtype != torch.float32:
        # one gathered dtype for every parameter (a LoRA adapter is float32 next to a bfloat16 base)
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for block in transformer_blocks(module):
        fully_shard(block, **options)
    fully_shard(module, **options)
    return module


def shard_frozen(module: nn.Module, parallel: str, dist: Distributed, device: torch.device, compute_dtype: torch.dtype | None = None) -> nn.Module:
    """A frozen model (the KL reference): sharded like the policy under FSDP2, whole on every rank under DDP.
    On one process it stays where it is (a copy of the policy, on the policy's device)."""
    if not dist.is_distributed:
        return module
    if parallel != "fsdp2":
        return module.to(device)
    return _fully_shard(module, dist, device, compute_dtype)


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Reduce gradients across ranks in this backward (the last micro-batch) or only accumulate them."""
    from torch.nn.parallel import DistributedDataParallel

    if enabled:
        yield
    elif isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    elif is_sharded(module):
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        yield


# ----------------------------------------------------------------------------------------------
# whole-model state for checkpoints (collective under FSDP2: every rank must call these)


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kwargs)


def full_model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights of `module` on the CPU (complete on rank 0 under FSDP2; empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    if not is_sharded(module):
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return get_model_state_dict(module, options=_options(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state keyed by parameter name, unsharded: the same for one process, DDP or FSDP2."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    if not optimizer.state:
        # never stepped (a PPO policy during critic warm-up): torch's helper would fill the state
        # with a zero-gradient step, which changes Adam's bias correction; keep the learning rates
        return {"lrs": [group["lr"] for group in optimizer.param_groups]}
    return get_optimizer_state_dict(module, optimizer, options=_options(full_state_dict=True, cpu_offload=dist.is_initialized()))


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load what `full_optimizer_state` saved into a (possibly sharded) optimizer."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    if "lrs" in state:
        for group, lr in zip(optimizer.param_groups, state["lrs"], strict=True):
            group["lr"] = lr
        return
    set_optimizer_state_dict(module, optimizer, state, options=_options(full_state_dict=dist.is_initialized()))
