"""Every rank runs the same collectives with the same shapes and dtypes, whatever its rows (2 gloo processes):
global batch norm with uneven and empty ranks in bf16, a temporal step with an empty rank under bf16 autocast,
and AVTS's held-out evaluation (rank 0 alone) under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

import dist_helpers
from conftest import REPO
from dist_helpers import _bn_case, free_port


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn") / "bn.pt"
    mp.spawn(dist_helpers.global_batchnorm_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=False)


def _one_process(counts, dtype):
    """Plain BatchNorm1d on the rows of both ranks, float64, with the same upstream gradient."""
    bn = torch.nn.BatchNorm1d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = torch.cat([_bn_case(n, dtype, seed=r).double() for r, n in enumerate(counts)]).requires_grad_(True)
    upstream = torch.cat([_bn_case(n, torch.float64, seed=10 + r).to(dtype).double() for r, n in enumerate(counts)])
    y = bn(x)
    (y * upstream).sum().backward()
    return bn, x, y


@pytest.mark.parametrize("name, counts, dtype, tol", [("uneven_fp64", (3, 5), torch.float64, 1e-10),
                                                       ("empty_bf16", (4, 0), torch.bfloat16, 2e-2)])
def test_global_batchnorm_equals_one_batchnorm_over_all_rows(two_ranks, name, counts, dtype, tol):
    ranks = [r[name] for r in two_ranks]
    bn, x, y = _one_process(counts, dtype)
    assert all(r["y_dtype"] == dtype for r in ranks)  # output in the input's dtype, statistics in float32
    got_y = torch.cat([r["y"].double() for r in ranks])
    got_grad = torch.cat([r["grad_x"].double() for r in ranks])
    assert torch.allclose(got_y, y.detach(), atol=tol, rtol=tol)
    assert torch.allclose(got_grad, x.grad, atol=tol * 4, rtol=tol * 4)
    # parameter gradients are each rank's part: DDP's average over ranks × ranks = the one-process gradient
    assert torch.allclose(sum(r["grad_w"].double() for r in ranks), bn.weight.grad, atol=tol * 10, rtol=tol)
    assert torch.allclose(sum(r["grad_b"].double() for r in ranks), bn.bias.grad, atol=tol * 10, rtol=tol)
    for r in ranks:  # every rank ends with the global running statistics, the empty one too
        assert torch.allclose(r["running_mean"].double(), bn.running_mean, atol=tol, rtol=tol)
        assert torch.allclose(r["running_var"].double(), bn.running_var, atol=tol, rtol=tol)


def test_a_temporal_step_with_an_empty_rank_under_bf16_autocast_completes(two_ranks):
    losses = [r["temporal_empty_rank"] for r in two_ranks]
    assert losses[0] == losses[1] and torch.isfinite(torch.tensor(losses[0]))


def test_a_process_group_made_without_local_rank_puts_each_rank_on_its_own_gpu(two_ranks):
    assert [r["gpu_of_caller_group"] for r in two_ranks] == ["cuda:0", "cuda:1"]


def test_avts_held_out_evaluation_on_rank_0_leaves_the_other_rank_in_step(small_world, tmp_path):
    """The issue's reproduction: avts-tiny under torchrun with a held-out evaluation at every step. The centring
    batch norms used to run their all-reduce on rank 0 alone (gloo: "Received data size doesn't match")."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "avcli", "pretrain", str(REPO / "recipes" / "avts-tiny.yaml"),
               f"data.catalog={small_world}", "~data.synthetic", "data.clips_per_item=1", "training.device=cpu",
               "method.held_out_every=1", "method.held_out_pairs=8", "training.steps=2", "training.batch_size=4",
               "training.workers=0", "training.log_every=1", "training.dist_timeout_s=60",
               f"output.run_dir={tmp_path / 'run'}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all('"heldout_sync_accuracy"' in line for line in lines)
