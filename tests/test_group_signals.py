"""A stop signal sent to every process of a job at once (Ctrl-C in a terminal, `timeout`, `kill -- -PGID`,
torchrun when it is signalled, Slurm's scancel and `--signal`): helper processes (DataLoader workers, ingest
workers) leave it to the main process, which stops exactly as when it alone is signalled — training at a step
boundary with a checkpoint and exit 4 that `--resume auto` continues, ingest with its committed rows kept.
Every process here starts in a session of its own, and is signalled through its process group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from avcli.data.catalog import Catalog
from avcli.recipe import recipe_from_dict
from avcli.stop_signals import StopSignal, helper_context, stop_signals_raise
from avcli.train.checkpoint import load_train_state, resolve_checkpoint
from avcli.train.loop import pretrain
from avcli.train.metrics import read_metrics

import stop_signal_helpers
from conftest import REPO, tiny_recipe_dict
from dist_helpers import free_port
from media_helpers import write_counter_video
from stop_signal_helpers import alive, children, wait_gone

TESTS = Path(__file__).resolve().parent
ENV = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}", OMP_NUM_THREADS="1", AVCLI_DEBUG="")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; Linux signal semantics")


def _kill(sig: signal.Signals, pid: int) -> None:
    """Signal `pid` from another process (the `kill` utility), as a job runner would: not from its parent."""
    subprocess.run(["kill", f"-{sig.name[3:]}", str(pid)], check=True)


def _start(command: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


# ---------------------------------------------------------------------------------------------- helpers alone


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_helper_ignores_stop_signals_from_its_start_and_its_terminate_kills_it(method):
    """Signals sent before the helper took its stance (blocked since the start) and after it are both without
    effect; its parent's terminate() still ends it (with SIGKILL: it ignores SIGTERM)."""
    ctx = helper_context(method)
    ready = ctx.Event()
    helper = ctx.Process(target=stop_signal_helpers.idle_helper, args=(ready, 1.0), daemon=True)
    helper.start()
    try:
        time.sleep(0.3)  # started, still in its first second: the signals are pending
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            _kill(sig, helper.pid)
        assert ready.wait(60)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            _kill(sig, helper.pid)
        time.sleep(1.0)
        assert helper.is_alive()
        helper.terminate()
        helper.join(10)
        assert helper.exitcode == -signal.SIGKILL
    finally:
        if helper.is_alive():
            helper.kill()


def test_a_stop_signal_raises_but_not_inside_a_held_section():
    with pytest.raises(StopSignal) as stop:
        with stop_signals_raise() as stops:
            with stops.held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler ran meanwhile, and raised nothing
                cut_short = False
            cut_short = True
    assert stop.value.signal == "SIGTERM" and not cut_short
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


@pytest.mark.parametrize("parent", ["orphan", "exiting"])
def test_a_helper_ends_with_its_parent(parent):
    """Whether the parent dies without a word (`os._exit`) or exits as usual with the helper still running."""
    out = subprocess.run([sys.executable, str(TESTS / "stop_signal_helpers.py"), parent], env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert wait_gone([int(out.stdout.split()[0])], timeout=10) == []


def test_loader_workers_survive_group_signals_from_their_start(tmp_path):
    """The main process has a flag handler (as training does); the test signals the whole group every 10 ms from
    before the workers start until it has read from them: every item arrives, once per epoch, the main process
    saw all three signals, and the workers are gone when it ends."""
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen([sys.executable, str(TESTS / "stop_signal_helpers.py"), "loader"], env=ENV,
                                stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
        try:
            assert proc.stdout.readline().strip() == "handlers"
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and proc.poll() is None:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                    os.killpg(proc.pid, sig)
                time.sleep(0.01)
            out = proc.stdout.read()
            proc.wait(120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        stderr.seek(0)
        assert proc.returncode == 0, stderr.read()
    result = json.loads(out.splitlines()[-1])
    assert (result["items"], result["distinct"]) == (120, 60)
    assert result["received"] == ["SIGINT", "SIGTERM", "SIGUSR1"]
    assert wait_gone(result["workers"], timeout=5) == []


# ---------------------------------------------------------------------------------------------- training


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["loss"]) for m in read_metrics(run_dir / "metrics.jsonl")]


def _wait_for_training(run_dir: Path, proc: subprocess.Popen, workers: int, timeout: float = 240) -> None:
    """Until rank 0 has logged a step and `workers` loader workers run (fails if the process ends first)."""
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ended early with {proc.returncode}: {proc.stderr.read()[-3000:]}")
        if metrics.exists() and metrics.read_text().strip() and workers <= _loader_workers(proc.pid):
            return
        time.sleep(0.05)
    pytest.fail("training did not start in time")


def _loader_workers(pid: int) -> int:
    return len(children(pid))


@pytest.fixture(scope="module")
def straight(small_world, tmp_path_factory):
    """An uninterrupted 8-step run (no loader workers: the clips are the same, drawn from each spec's seed)."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    pretrain(recipe_from_dict(tiny_recipe_dict(small_world, run_dir, steps=8, checkpoint_every=100)))
    return _losses(run_dir)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_group_signal_stops_training_with_loader_workers_at_a_checkpoint(small_world, tmp_path, straight, name):
    sig = signal.Signals[name]
    tree = tiny_recipe_dict(small_world, tmp_path / "run", steps=8, checkpoint_every=100, workers=2)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    command = [sys.executable, "-m", "avcli", "pretrain", str(recipe), "--resume", "auto"]
    proc = _start(command)
    _wait_for_training(tmp_path / "run", proc, workers=2)
    workers = children(proc.pid)
    os.killpg(proc.pid, sig)  # the main process and both workers
    started = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err[-3000:]
    assert f"stopped by {sig.name} at step" in err and "--resume auto" in err and "killed by signal" not in err
    stopped_at = load_train_state(resolve_checkpoint(tmp_path / "run"))["step"]
    print(f"{name}: exit 4 {time.monotonic() - started:.1f} s after the signal, stopped at step {stopped_at}")
    assert f"stopped by {sig.name} at step {stopped_at};" in err
    assert 1 <= stopped_at < 8 and [s for s, _ in _losses(tmp_path / "run")] == list(range(1, stopped_at + 1))
    assert wait_gone(workers, timeout=5) == []  # the workers ended with the main process

    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)  # the same command
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"(step {stopped_at}, " in done.stderr
    got = _losses(tmp_path / "run")
    assert [s for s, _ in got] == list(range(1, 9))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in straight], abs=1e-5)


@pytest.mark.slow
def test_a_signal_to_every_process_of_a_torchrun_job_stops_both_ranks_at_one_checkpoint(small_world, tmp_path):
    """torchrun starts each rank in a session of its own and, when signalled, signals each rank's process group
    (the rank and its loader workers); Slurm signals every process itself. Here: SIGTERM to torchrun's group and
    to each rank's group at once. Both ranks stop at the same step with a checkpoint (exit 4 each; torchrun itself
    exits 1, with its SignalException), and `torchrun ... --resume auto` continues with the losses of an
    uninterrupted 2-process run."""
    def tree(run: str, workers: int) -> dict:
        return tiny_recipe_dict(small_world, tmp_path / run, steps=6, batch_size=4, checkpoint_every=100,
                                dist_timeout_s=120, workers=workers)

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port"]
    straight_recipe = tmp_path / "straight.yaml"
    straight_recipe.write_text(yaml.safe_dump(tree("straight", 0)))
    done = subprocess.run([*torchrun, str(free_port()), "-m", "avcli", "pretrain", str(straight_recipe)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree("run", 2)))
    command = [*torchrun, str(free_port()), "-m", "avcli", "pretrain", str(recipe), "--resume", "auto"]
    proc = _start(command)
    deadline = time.monotonic() + 240
    while True:  # both ranks training, each with its 2 loader workers
        ranks = children(proc.pid)
        if (tmp_path / "run" / "metrics.jsonl").exists() and len(ranks) == 2 and all(
                len(children(rank)) >= 2 for rank in ranks):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"torchrun ended or did not start in time: {proc.returncode} {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    everyone = [proc.pid, *ranks, *(w for rank in ranks for w in children(rank))]
    for group in (proc.pid, *ranks):
        os.killpg(group, signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1 and "SignalException" in err  # torchrun's own outcome when it is signalled
    stopped_at = load_train_state(resolve_checkpoint(tmp_path / "run"))["step"]
    print(f"torchrun: both ranks stopped at step {stopped_at}")
    for rank in (0, 1):
        assert f"[rank {rank}] stopped by SIGTERM at step {stopped_at};" in err, err[-3000:]
    assert "killed by signal" not in err and "forcefully exiting" not in err  # no rank needed torchrun's SIGKILL
    assert 1 <= stopped_at < 6 and len(_losses(tmp_path / "run")) == stopped_at
    assert wait_gone(everyone, timeout=10) == []

    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got, expected = _losses(tmp_path / "run"), _losses(tmp_path / "straight")
    assert [s for s, _ in got] == list(range(1, 7))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-5)


# ---------------------------------------------------------------------------------------------- ingest


def _rows(catalog: Path) -> list[dict]:
    with Catalog(catalog) as c:
        return c.rows()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_ingest_signalled_as_a_group_keeps_its_rows_and_the_rerun_equals_a_clean_ingest(tmp_path, name):
    sig = signal.Signals[name]
    folder = tmp_path / "in"
    folder.mkdir()
    # enough files that the ingest is far from done when the first row is out, even on a loaded machine (16 took
    # about a second, and a busy test process once signalled only after the last row)
    files = 48
    for k in range(files):
        write_counter_video(folder / f"clip_{k:02d}.mp4", frames=150 + 5 * (k % 16), fps=25, size=(160, 120))

    def ingest(out: str) -> list[str]:
        return [sys.executable, "-m", "avcli", "ingest", str(folder), "--out", str(tmp_path / out), "--workers", "2"]

    reference = subprocess.run(ingest("ref"), env=ENV, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr

    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen(ingest("c"), env=ENV, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                start_new_session=True)
        reported = [proc.stdout.readline()]  # one row committed: the workers are busy with the next ones
        workers = children(proc.pid)
        assert len([w for w in workers if alive(w)]) >= 2
        os.killpg(proc.pid, sig)
        reported += proc.stdout.readlines()  # the rest, through the same buffer
        proc.wait(120)
        stderr.seek(0)
        err = stderr.read()
    assert proc.returncode == 4, err
    assert f"ingest interrupted by {sig.name};" in err
    kept = _rows(tmp_path / "c")
    print(f"{name}: {len(kept)} of {files} rows kept")
    assert 1 <= len(kept) < files and len(kept) == len([line for line in reported if line.strip()])  # each reported row
    assert wait_gone(workers, timeout=10) == []

    again = subprocess.run(ingest("c"), env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    unchanged = [json.loads(line) for line in again.stdout.splitlines() if json.loads(line).get("unchanged")]
    assert len(unchanged) == len(kept)  # the rows kept were not redone
    assert _rows(tmp_path / "c") == _rows(tmp_path / "ref")
    assert not list((tmp_path / "c" / "media").glob("*/*.partial*"))


# ---------------------------------------------------------------------------------------------- probe


def test_probe_extraction_signalled_as_a_group_leaves_the_feature_cache_consistent(small_world, tmp_path):
    """The probe has no stop handling of its own: SIGTERM ends it at once, as any program; its loader workers
    end with it, and the cache (each shard and manifest written under a temporary name, then renamed) lists only
    whole shards, with which the rerun gives the results of an uninterrupted probe."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(small_world, tmp_path / "run")))

    def probe(cache: str) -> list[str]:
        return [sys.executable, "-m", "avcli", "probe", "--task", "synthetic", "--data-root", str(small_world),
                "--checkpoint", "random", "--recipe", str(recipe), "--clips", "4", "--workers", "2",
                "--cache-dir", str(tmp_path / cache)]

    clean = subprocess.run(probe("clean"), env=ENV, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-3000:]
    proc = _start(probe("cache"))
    deadline = time.monotonic() + 120
    while len(workers := children(proc.pid)) < 2:  # extraction under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.02)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert wait_gone(workers, timeout=10) == []
    from safetensors.torch import load_file

    entries = [p for p in (tmp_path / "cache").glob("*") if not p.name.startswith(".")]
    manifests = {p: json.loads((p / "manifest.json").read_text()) for p in entries if (p / "manifest.json").exists()}
    print(f"probe: {sum(m['complete'] for m in manifests.values())} of 4 cache entries complete before the signal")
    for entry, manifest in manifests.items():  # only whole shards listed
        assert all(load_file(str(entry / s["file"]))["features"].shape[0] == s["videos"] for s in manifest["shards"])
    again = subprocess.run(probe("cache"), env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == clean.stdout
