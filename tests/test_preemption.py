"""Preemption and exact resume with real signals and real processes: `avcli pretrain` stops at a step boundary on
SIGTERM/SIGUSR1 with a checkpoint and exit code 4, and a rerun with --resume auto gives the losses of an
uninterrupted run — on one process and on two (torchrun, gloo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from avcli.recipe import recipe_from_dict
from avcli.train.checkpoint import load_train_state, resolve_checkpoint
from avcli.train.loop import pretrain
from avcli.train.metrics import read_metrics

from conftest import REPO, tiny_recipe_dict
from dist_helpers import free_port

ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", AVCLI_DEBUG="")


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["loss"]) for m in read_metrics(run_dir / "metrics.jsonl")]


def _write(tree: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(tree))
    return path


def _wait_for_steps(run_dir: Path, procs, steps: int = 1, timeout: float = 180) -> None:
    """Until rank 0 has logged `steps` steps (fails if a process ends first)."""
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
            return
        if any(p.poll() is not None for p in procs):
            pytest.fail(f"a process ended early: {[p.returncode for p in procs]}")
        time.sleep(0.05)
    pytest.fail("no metrics line in time")


def _finish(procs, timeout: float = 180) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err))
    return out


def test_sigusr1_stops_with_a_checkpoint_and_exit_4_and_the_rerun_resumes(small_world, tmp_path):
    tree = tiny_recipe_dict(small_world, tmp_path / "run", steps=8, checkpoint_every=100)
    pretrain(recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "straight", steps=8, checkpoint_every=100)))
    recipe = _write(tree, tmp_path / "r.yaml")
    command = [sys.executable, "-m", "avcli", "pretrain", str(recipe), "--resume", "auto"]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_steps(tmp_path / "run", [proc])
    proc.send_signal(signal.SIGUSR1)
    [(code, err)] = _finish([proc])
    assert code == 4, err
    assert "stopped by SIGUSR1" in err and "--resume auto" in err
    stopped_at = load_train_state(resolve_checkpoint(tmp_path / "run"))["step"]
    assert 1 <= stopped_at < 8 and [s for s, _ in _losses(tmp_path / "run")] == list(range(1, stopped_at + 1))

    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)  # the same command
    assert done.returncode == 0, done.stderr
    assert f"resuming from {tmp_path / 'run' / 'checkpoints' / f'step_{stopped_at}'} (step {stopped_at}" in done.stderr
    got, expected = _losses(tmp_path / "run"), _losses(tmp_path / "straight")
    assert [s for s, _ in got] == list(range(1, 9))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-5)


def test_sigterm_on_one_rank_stops_both_at_the_same_step_and_torchrun_resumes(small_world, tmp_path):
    """Two processes launched as torchrun launches them; SIGTERM reaches rank 1 only (as when a node is
    preempted): both agree to stop at one step boundary, rank 0 checkpoints, both exit 4; `torchrun ... --resume
    auto` continues and logs the losses of an uninterrupted 2-process run."""
    def tree(run: str) -> dict:
        return tiny_recipe_dict(small_world, tmp_path / run, steps=6, batch_size=4, checkpoint_every=100,
                                dist_timeout_s=120)

    straight = _write(tree("straight"), tmp_path / "straight.yaml")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port"]
    done = subprocess.run([*torchrun, str(free_port()), "-m", "avcli", "pretrain", str(straight)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_train_state(resolve_checkpoint(tmp_path / "straight"))["world_size"] == 2

    recipe = _write(tree("run"), tmp_path / "r.yaml")
    port = str(free_port())
    procs = [subprocess.Popen(
        [sys.executable, "-m", "avcli", "pretrain", str(recipe), "--resume", "auto"],
        env=dict(ENV, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    _wait_for_steps(tmp_path / "run", procs)
    procs[1].send_signal(signal.SIGTERM)
    (code0, err0), (code1, err1) = _finish(procs)
    assert (code0, code1) == (4, 4), err0[-2000:] + err1[-2000:]
    assert "a stop request on another rank" in err0 and "stopped by SIGTERM" in err1
    stopped_at = load_train_state(resolve_checkpoint(tmp_path / "run"))["step"]
    assert 1 <= stopped_at < 6 and len(_losses(tmp_path / "run")) == stopped_at

    done = subprocess.run([*torchrun, port, "-m", "avcli", "pretrain", str(recipe), "--resume", "auto"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"steps": 6') == 1  # one JSON summary per job, from rank 0
    got, expected = _losses(tmp_path / "run"), _losses(tmp_path / "straight")
    assert [s for s, _ in got] == list(range(1, 7))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-5)


def test_a_killed_run_resumes_from_its_last_checkpoint_with_the_same_losses(small_world, tmp_path):
    """SIGKILL leaves no chance to checkpoint: the rerun continues from the last periodic checkpoint, drops the
    metrics lines logged after it, and logs the losses of an uninterrupted run."""
    pretrain(recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "straight", steps=8, checkpoint_every=2)))
    recipe = _write(tiny_recipe_dict(small_world, tmp_path / "run", steps=8, checkpoint_every=2), tmp_path / "r.yaml")
    command = [sys.executable, "-m", "avcli", "pretrain", str(recipe), "--resume", "auto"]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_steps(tmp_path / "run", [proc], steps=3)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got, expected = _losses(tmp_path / "run"), _losses(tmp_path / "straight")
    assert [s for s, _ in got] == list(range(1, 9))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-5)
