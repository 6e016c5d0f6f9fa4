"""What a lab's first CUDA run depends on, checked on CPU: which GPU each process takes, which precision
`auto` picks, fp16 with loss scaling, float32 similarities under bf16 autocast, and a training step that waits for
the device only once."""

from __future__ import annotations

import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from avcli.errors import UsageError
from avcli.recipe import recipe_from_dict
from avcli.train import distributed, runtime
from avcli.train.checkpoint import load_train_state, resolve_checkpoint
from avcli.train.launch import LaunchEnv
from avcli.train.loop import pretrain
from avcli.train.metrics import read_metrics

from conftest import tiny_recipe_dict
from test_methods import METHODS

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------- GPU choice


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend this machine has `count` GPUs of a compute capability; records set_device calls."""
    calls = []

    def install(count: int = 2, capability=(8, 0)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(torch.device(device)))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")
        return calls

    return install


def test_an_explicit_gpu_becomes_the_current_device(fake_gpus):
    calls = fake_gpus(count=2)
    assert distributed._rank_device("cuda:1", 1, 0) == torch.device("cuda", 1)
    assert calls == [torch.device("cuda", 1)]
    with pytest.raises(UsageError, match=r"training.device=cuda:2: this machine has 2 GPU"):
        distributed._rank_device("cuda:2", 1, 0)


def test_each_torchrun_process_takes_its_own_gpu_and_more_processes_than_gpus_is_an_error(fake_gpus):
    calls = fake_gpus(count=2)
    env = LaunchEnv(1, 2, 1, "torchrun")
    assert distributed._rank_device("auto", 2, 1, env) == torch.device("cuda", 1) and calls[-1].index == 1
    with pytest.raises(UsageError, match=r"process 2 of this node has no GPU of its own: 2 GPU\(s\).*"
                                         r"--nproc_per_node 2"):
        distributed._rank_device("auto", 3, 2, LaunchEnv(2, 3, 2, "torchrun"))


def test_slurm_tasks_bound_to_their_own_gpu_each_take_cuda_0(fake_gpus, monkeypatch):
    fake_gpus(count=1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # srun --gpus-per-task 1: task 3 sees its GPU as cuda:0
    assert distributed._rank_device("auto", 4, 3, LaunchEnv(3, 4, 3, "Slurm")) == torch.device("cuda", 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(UsageError, match="no GPU of its own"):
        distributed._rank_device("auto", 4, 3, LaunchEnv(3, 4, 3, "Slurm"))


@pytest.mark.parametrize("capability, auto", [((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 0), "fp16"), ((7, 5), "fp16")])
def test_precision_auto_uses_bf16_only_where_the_gpu_has_it(fake_gpus, capability, auto):
    fake_gpus(capability=capability)
    gpu = torch.device("cuda", 0)
    assert runtime.resolve_precision(gpu, "auto") == auto
    assert runtime.resolve_precision(torch.device("cpu"), "auto") == "fp32"
    if auto == "fp16":  # V100 / T4: bf16 would only be emulated
        with pytest.raises(UsageError, match=r"training.precision=bf16: cuda:0 \(Tesla V100.*\) has no native bf16"):
            runtime.resolve_precision(gpu, "bf16")


def test_fp16_trains_with_loss_scaling_and_the_scale_is_checkpointed(small_world, tmp_path):
    recipe = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "run", steps=3, precision="fp16"))
    summary = pretrain(recipe)
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert summary["steps"] == 3 and all("loss_scale" in m for m in metrics)
    assert metrics[-1]["loss_scale"] <= 65536.0  # an overflow halves it; it never grows within 2000 steps
    state = load_train_state(resolve_checkpoint(tmp_path / "run"))
    assert state["grad_scaler"]["scale"] == metrics[-1]["loss_scale"]


# --------------------------------------------------------------------------------------------- float32 losses


class MatmulDtypes(TorchDispatchMode):
    """The dtype of every matrix product computed outside the model's and the objective's submodules (encoders,
    heads, classifiers): the products of the losses, soft targets, banks and queues."""

    PRODUCTS = {aten.mm.default, aten.bmm.default, aten.addmm.default, aten.baddbmm.default}

    def __init__(self, *modules):
        super().__init__()
        self.depth, self.dtypes, self.handles = 0, [], []
        for root in modules:
            for name, module in root.named_modules():
                if name and not hasattr(module, "begin_journal"):  # banks and queues are loss state, not layers
                    self.handles.append(module.register_forward_pre_hook(lambda *a: self._enter()))
                    self.handles.append(module.register_forward_hook(lambda *a: self._leave()))

    def _enter(self):
        self.depth += 1

    def _leave(self):
        self.depth -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.PRODUCTS and self.depth == 0:
            self.dtypes.append(args[0].dtype if func in (aten.mm.default, aten.bmm.default) else args[1].dtype)
        return func(*args, **(kwargs or {}))


def test_avts_pair_loss_is_float32_under_bf16_autocast():
    import avcli.losses.avts as avts_losses

    pairs = torch.ones(4, 5, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v, a = torch.randn(4, 8, dtype=torch.bfloat16), torch.randn(5, 8, dtype=torch.bfloat16)
        total, count = avts_losses.masked_pair_loss(v, a, pairs, 2.0)
    assert total.dtype == torch.float32 and count == 20
    assert total == avts_losses.masked_pair_loss(v.float(), a.float(), pairs, 2.0)[0]


def _bf16_method_recipe(world, run_dir, name, precision="bf16", **training):
    """test_methods' recipe of `name`, with every part of the method switched on from the first step."""
    import copy

    method, sampler = copy.deepcopy(METHODS[name])
    if name == "robust_xid":
        method["weights"] = {"start_epoch": 0, "statistics": "ema"}
        method["soft_targets"] = {"start_epoch": 0}
    if name == "avts":  # the recipe's embedding: time-aligned bins, centred, with batch negatives
        method.update(loss="margin", margin=2.0, sync_bins=2, center_embeddings=True, batch_negatives=True,
                      held_out_pairs=0)
    if name == "temporal":
        method["extra_positives_start_epoch"] = 0
    tree = tiny_recipe_dict(world, run_dir, **{"steps": 3, "precision": precision, **training})
    tree["method"], tree["data"]["sampler"] = method, sampler
    if name.startswith("temporal"):
        tree["data"]["clip"]["audio_seconds"] = 0.5
    return recipe_from_dict(tree)


# --------------------------------------------------------------------------------------------- one read per step


class DeviceReads(TorchDispatchMode):
    """Operations that make the host wait for the device on a GPU — a value read back (`.item()`, `float()`,
    `bool()`, `.tolist()`), or an output whose size depends on values (nonzero, unique, boolean-mask indexing) —
    applied to tensors that would live on the device. Tensors the data loader hands over are host data, and so is
    whatever is computed from them alone; copies (`.to(device)`) make device data. The loader's own work (in its
    workers on a real run) is host work: the test loads in the main process (`workers: 0`), so that no process is
    forked while this mode is active."""

    SIZE_FROM_VALUES = {aten.nonzero.default, aten._unique2.default, aten.unique_dim.default,
                        aten.unique_consecutive.default, aten.masked_select.default, aten._local_scalar_dense.default}
    COPIES = {aten._to_copy.default, aten.copy_.default}
    # host-side by construction on a GPU run: the optimiser's step counters (CPU tensors unless capturable), range
    # checks that only run for CPU indices, and the data loader's fetch (decoding and collation, in its workers)
    EXEMPT = ("torch/optim/", "_check_range", "torch/utils/data/")

    def __init__(self):
        super().__init__()
        self.events: list[str] = []

    @staticmethod
    def is_host(t) -> bool:
        return getattr(t, "_avcli_host", False)

    def mark(self, tree) -> None:
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor):
                t._avcli_host = True

    def _exempt(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            where = f"{frame.f_code.co_filename}:{frame.f_code.co_name}"
            if any(e in where for e in self.EXEMPT):
                return True
            frame = frame.f_back
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        host = bool(tensors) and all(self.is_host(t) for t in tensors)
        out = func(*args, **(kwargs or {}))
        if host and func not in self.COPIES:
            self.mark(out)
        elif not host and self._reads(func, args) and not self._exempt():
            self.events.append(str(func))
        return out

    def _reads(self, func, args) -> bool:
        if func in self.SIZE_FROM_VALUES:
            return True
        if func is aten.index.Tensor:  # a boolean mask as an index
            return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        return False


@pytest.mark.parametrize("name", ["xid", "xid_bank", "robust_xid", "avts", "temporal", "movies"])
def test_a_step_under_bf16_computes_losses_in_float32_and_reads_the_device_once(small_world, tmp_path, name,
                                                                                 monkeypatch):
    """Five steps of each objective under bf16 autocast, every part of the method on from the first step:
    - every matrix product outside the encoders, heads and classifiers (losses, soft targets, bank and queue
      scores) is float32; AVTS has none (distances), so the embeddings reaching its losses must be float32;
    - steps 2–4 (no log line, no checkpoint: both come at step 5) read the device exactly once: the step's agreed
      loss, finiteness and stop flag. Health figures stay on the device, counts come from host masks."""
    import avcli.losses.avts as avts_losses
    import avcli.train.loop as loop
    import avcli.train.objectives.avts as avts
    import avcli.train.step as step_module

    reads, marks, dtypes, avts_inputs = DeviceReads(), [], [], []
    original_batch, original_forward = loop.train_batch, step_module.TrainStep.forward

    def train_batch(batch, *args, **kwargs):
        reads.mark(batch)  # what the loader delivers is host data
        marks.append(len(reads.events))
        return original_batch(batch, *args, **kwargs)

    def forward(self, batch):
        with MatmulDtypes(self.model, self.objective) as mode:
            out = original_forward(self, batch)
        dtypes.extend(mode.dtypes)
        return out

    def tolist(self, _original=torch.Tensor.tolist):
        if not reads.is_host(self) and not reads._exempt():
            reads.events.append("tolist")
        return _original(self)

    def spy(original):
        def wrapper(v, a, *args, **kwargs):
            avts_inputs.append((v.dtype, a.dtype))
            return original(v, a, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(loop, "train_batch", train_batch)
    monkeypatch.setattr(step_module.TrainStep, "forward", forward)
    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    monkeypatch.setattr(avts, "avts_margin_loss", spy(avts.avts_margin_loss))
    monkeypatch.setattr(avts, "masked_pair_loss", spy(avts_losses.masked_pair_loss))
    training = dict(steps=5, log_every=100, checkpoint_every=100, workers=0)
    if name == "xid":
        recipe = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "run", precision="bf16", **training))
    else:
        recipe = _bf16_method_recipe(small_world, tmp_path / "run", name, **training)
    with reads:
        summary = pretrain(recipe)
    assert summary["final_loss"] is not None
    assert all(d == torch.float32 for d in dtypes), sorted(set(map(str, dtypes)))
    if name == "avts":  # 5 steps: the sampled pairs and the batch negatives
        assert len(avts_inputs) == 10 and all(v == a == torch.float32 for v, a in avts_inputs)
    else:
        assert dtypes
    per_step = [reads.events[marks[k]:marks[k + 1]] for k in (1, 2, 3)]
    assert per_step == [["tolist"]] * 3, per_step
