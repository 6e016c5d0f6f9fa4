"""One training job as several processes (DESIGN.md → Distributed): torchrun, or srun, is the engine.

- `launch_env()` (avcli/train/launch.py): rank, world size and local rank from torchrun's or Slurm's variables.
- `setup()`: the process group — NCCL when the job trains on CUDA, gloo on CPU — with a timeout, so a rank that
  stops answering ends the job with an error instead of a hang; each rank's device (`cuda:LOCAL_RANK`).
- The collectives the loop and the objectives use. Every helper is the identity on a single process, so the
  single-process code path is exactly what it was before any of this existed.

A failed rank ends the job: gloo and NCCL raise in the surviving ranks when a peer's connection closes or the
timeout passes, torchrun (or `srun --kill-on-bad-exit`) stops the remaining workers, and `PeerFailure` turns the
backend's message into one sentence. Decisions that can fail on one rank only (the run directory, the catalog,
the audio statistics) are taken by rank 0 and shared with `on_main`, so every rank raises the same error.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from avcli.errors import AvcliError, UsageError
from avcli.train.launch import LaunchEnv, launch_env

T = TypeVar("T")


class PeerFailure(AvcliError):
    """A collective failed: another rank crashed (its own error is in its log) or stopped answering in time."""


@dataclass
class Context:
    """This process's part in the job: rank, world size, its device, and whether it owns the process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None = None
    owned: bool = False  # we initialised the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _rank_device(name: str, world: int, local_rank: int, env: LaunchEnv | None = None) -> torch.device:
    """This process's device. On CUDA it is also made the current device (`torch.cuda.set_device`), so that
    every kernel, NCCL communicator and `torch.cuda` query of the process lands on it, not on cuda:0."""
    from avcli.train.runtime import resolve_device

    device = resolve_device(name)
    if device.type != "cuda":
        if world > 1 and device.type != "cpu":
            raise UsageError(f"training.device={name}: several processes train on CUDA (NCCL) or CPU (gloo) only")
        return device
    count = torch.cuda.device_count()
    if world == 1:
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= count:
            raise UsageError(f"training.device={name}: this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1}); "
                             "pick one of them or use device: auto")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
        return device
    if name not in ("auto", "cuda"):
        raise UsageError(f"training.device={name} with {world} processes would put every process on one GPU; "
                         "use device: auto (each process takes cuda:LOCAL_RANK)")
    if local_rank >= count:
        if not _bound_by_slurm(env):
            raise UsageError(
                f"process {local_rank} of this node has no GPU of its own: {count} GPU(s) are visible and two "
                f"processes on one GPU would only slow each other down; start at most {count} process(es) per node "
                f"(torchrun --nproc_per_node {count}; srun --ntasks-per-node {count} or --gpus-per-task 1)"
            )
        local_rank %= count  # Slurm bound each task to its own GPU(s): they are numbered from 0 in each task
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def _bound_by_slurm(env: LaunchEnv | None) -> bool:
    """Tasks started by srun with a GPU binding (--gpus-per-task, --gpu-bind) each see only their own GPUs."""
    return env is not None and env.source == "Slurm" and "CUDA_VISIBLE_DEVICES" in os.environ


def local_rank_in_group() -> int:
    """This process's index among the ranks of the existing process group that run on its host: for a group made
    by the caller (mp.spawn, a notebook) without torchrun's LOCAL_RANK. Host names are exchanged over the host
    (gloo) group, which works whatever the default group's backend and whatever device is current."""
    hosts = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname(), group=host_group())
    me = dist.get_rank()
    return sum(1 for host in hosts[:me] if host == hosts[me])


def setup(device_name: str, timeout_s: float) -> Context:
    """Join the job's process group (creating it when launched by torchrun/srun) and pick this rank's device."""
    _nccl_error_handling()
    if dist.is_available() and dist.is_initialized():  # the caller set it up (tests, notebooks): use it as is
        env = launch_env()
        world, rank = dist.get_world_size(), dist.get_rank()
        _make_host_group()
        local_rank = env.local_rank
        wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        known = "LOCAL_RANK" in os.environ or env.source == "Slurm"
        if world > 1 and wants_cuda and not known:  # else every rank would take LOCAL_RANK's default, cuda:0
            local_rank = local_rank_in_group()
        return Context(rank, world, local_rank, _rank_device(device_name, world, local_rank, env),
                       dist.get_backend(), owned=False)
    env = launch_env()
    if env.world_size <= 1:
        return Context(0, 1, 0, _rank_device(device_name, 1, 0))
    if not dist.is_available():
        raise UsageError(f"{env.source} started {env.world_size} processes but this PyTorch has no torch.distributed")
    if env.source == "Slurm" and not ("MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ):
        raise UsageError("srun started several tasks but MASTER_ADDR/MASTER_PORT are not set; export them in the job "
                         "script (see the README, Multi-GPU and multi-node) or launch with torchrun")
    device = _rank_device(device_name, env.world_size, env.local_rank, env)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend, init_method="env://", rank=env.rank, world_size=env.world_size,
        timeout=timedelta(seconds=timeout_s), device_id=device if device.type == "cuda" else None,
    )
    _make_host_group()
    return Context(env.rank, env.world_size, env.local_rank, device, backend, owned=True)


def _nccl_error_handling() -> None:
    """What a collective that fails or hangs does under NCCL (the user's own setting wins).

    TORCH_NCCL_ASYNC_ERROR_HANDLING=3 (torch's default, "tear down without cleaning up") makes the watchdog abort
    the process after training.dist_timeout_s: no Python error, no `[rank R]` message, exit by SIGABRT. With 2
    ("clean up only") the watchdog aborts the NCCL communicators instead, and the stuck or next collective raises
    in the training loop, which turns it into avcli's one-line `[rank R]` error and exit code 1; torchrun then
    stops the other ranks as for any failed worker. The watchdog's own report of the timed-out collective (which
    operation, which sequence number) is still logged first.
    TORCH_NCCL_DUMP_ON_TIMEOUT stays the user's choice."""
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
def teardown(ctx: Context, clean: bool = True) -> None:
    """Leave the process group we created. After a failure NCCL's destroy can block on the dead peer's pending
    work, so then we only leave it to the process exit."""
    global _HOST_GROUP
    if ctx.owned and dist.is_initialized() and (clean or ctx.backend == "gloo"):
        dist.destroy_process_group()
        _HOST_GROUP = None


# --------------------------------------------------------------------------------------------- queries


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


# --------------------------------------------------------------------------------------------- collectives


_HOST_GROUP = None  # a gloo group over the same ranks, for values the host knows (row counts): see host_group()


def host_group():
    """The group for exchanging host-side values: the default group when it is gloo (it works on CPU tensors),
    else a gloo group made once by `setup` on every rank. Counts sent over NCCL would have to be read back from
    the GPU, a device sync; over gloo they never leave the host."""
    if dist.get_backend() == "gloo":
        return None
    if _HOST_GROUP is None:
        raise RuntimeError("no host group: the process group was not set up by avcli.train.distributed.setup")
    return _HOST_GROUP


def _make_host_group() -> None:
    global _HOST_GROUP
    _HOST_GROUP = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None


def host_count(local: int | torch.Tensor) -> int:
    """The sum over ranks of a count this rank knows on the host (an int, or the True entries of a CPU mask)."""
    n = int(local.sum()) if isinstance(local, torch.Tensor) else int(local)
    if world_size() == 1:
        return n
    total = torch.tensor([n], dtype=torch.long)
    dist.all_reduce(total, group=host_group())
    return int(total[0])


def _row_counts(x: torch.Tensor, same_size: bool) -> list[int]:
    """Every rank's row count of `x` (shapes are known on the host: exchanged over the host group)."""
    if same_size:
        return [x.shape[0]] * world_size()
    counts = torch.zeros(world_size(), dtype=torch.long)
    counts[rank()] = x.shape[0]
    dist.all_reduce(counts, group=host_group())
    return counts.tolist()


def _gather_rows(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Every rank's rows, rank 0's first; ranks may hold different numbers of rows (padded for the transfer)."""
    longest = max(counts)
    x = x.contiguous()
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])])
    parts = [torch.empty_like(x) for _ in counts]
    dist.all_gather(parts, x)
    return torch.cat([part[:n] for part, n in zip(parts, counts)])


class _GatherWithGrad(torch.autograd.Function):
    """All ranks' rows, with gradient: each rank's loss depends on every rank's rows, so the gradient of a row is
    the sum over ranks of ∂loss_rank/∂row — an all-reduce of the gathered gradient, then this rank's slice.
    (DDP then averages parameter gradients over ranks: the result is the gradient of the mean loss.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        ctx.counts, ctx.me = counts, rank()
        return _gather_rows(x, counts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.counts[: ctx.me])
        return grad[start : start + ctx.counts[ctx.me]], None


def all_gather_with_grad(x: torch.Tensor, same_size: bool = True) -> tuple[torch.Tensor, int]:
    """(rows of every rank concatenated in rank order, where this rank's rows start). Gradient reaches the rank
    that computed each row. `same_size=False` when ranks may hold different numbers of rows (one more
    collective to learn the counts). On one process: (x, 0)."""
    if world_size() == 1:
        return x, 0
    counts = _row_counts(x, same_size)
    return _GatherWithGrad.apply(x, counts), sum(counts[: rank()])


@torch.no_grad()
def all_gather(x: torch.Tensor, same_size: bool = True) -> torch.Tensor:
    """Rows of every rank concatenated in rank order, without gradient. On one process: x."""
    if world_size() == 1:
        return x
    return _gather_rows(x.detach(), _row_counts(x, same_size))


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (in place, returned). On one process: x."""
    if world_size() > 1:
        dist.all_reduce(x)
    return x


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def gather_objects(obj) -> list:
    """Every rank's picklable `obj`, in rank order (small things only: stats, RNG states)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_tensors(tensors) -> None:
    """Overwrite `tensors` with rank 0's values (in place)."""
    if world_size() > 1:
        for t in tensors:
            dist.broadcast(t, src=0)


def on_main(fn: Callable[[], T], share: bool = True) -> T | None:
    """Rank 0 runs `fn`; every rank returns its result (`share=False`: the others get None, for results that are
    rank 0's alone) or raises its error (an AvcliError keeps its message and exit code), so a problem only rank 0
    can see — a used run directory, a missing package — stops all ranks."""
    if world_size() == 1:
        return fn()
    message = [None]
    error, result = None, None
    if rank() == 0:
        try:
            result = fn()
            message[0] = ("ok", result if share else None)
        except Exception as exc:  # shared first, then re-raised on rank 0 as it was
            error = exc
            code = exc.exit_code if isinstance(exc, AvcliError) else 1
            text = str(exc) if isinstance(exc, AvcliError) else f"rank 0 failed: {type(exc).__name__}: {exc}"
            message[0] = ("error", text, code)
    dist.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    if message[0][0] == "error":
        _, text, code = message[0]
        raise (UsageError if code == UsageError.exit_code else AvcliError)(text)
    return result if rank() == 0 else message[0][1]


def peer_failure(exc: BaseException, ctx: Context) -> PeerFailure | None:
    """A clear error for a failed collective (None when `exc` is something else)."""
    text = str(exc)
    dist_error = getattr(dist, "DistError", ())
    markers = ("Connection closed by peer", "Connection reset", "Timed out", "timed out", "NCCL", "gloo",
               "ProcessGroup", "Socket Timeout")
    if not (isinstance(exc, dist_error) or isinstance(exc, RuntimeError) and any(m in text for m in markers)):
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return PeerFailure(
        f"rank {ctx.rank}: a collective with the other ranks failed ({first[:300]}); another rank probably failed "
        f"first (see its error above) or did not answer within training.dist_timeout_s; fix that and rerun the "
        "same command with --resume auto"
    )
