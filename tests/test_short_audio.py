"""Short recordings in the audio probes: where a recording shorter than the window lies (`--audio-padding`), how
many windows a recording gets (planned from its length), the statistics of a random-init frontend (fitted once
per probe, on the frontend's own device), what the JSON line says (architecture, window, padding), which
architecture a random baseline is, and spoken digits generated with espeak-ng, split by voice, probed with a
random-init Conv2D-10 and the defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from avcli.cli import run
from avcli.evaluate import probe as probe_module
from avcli.evaluate.clip_features import extract_clip_features, pad_recording
from avcli.evaluate.clip_sampling import DEFAULT_PADDING, ClipPlan, windows_for
from avcli.evaluate.encoders import load_eval_encoders
from avcli.media.audio_features import AudioFrontend, build_audio_frontend
from avcli.recipe.schema import AudioFeatures
from avcli.tasks.base import TaskVideo
from avcli.tasks.spoken_digits import SMALL, espeak_available, generate_spoken_digits

from conftest import REPO, tiny_recipe_dict
from media_helpers import write_chirp_audio, write_tone_audio


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVCLI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def tiny_recipe(tmp_path, write_recipe):
    return write_recipe(tiny_recipe_dict(tmp_path / "unused", tmp_path / "run"))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ windows


def test_a_short_click_lands_where_the_padding_puts_it():
    """0.5 s at 16 kHz with a click in its middle (sample 4000), in a 2 s window of 32000 samples."""
    click = torch.zeros(8000)
    click[4000:4010] = 1.0

    def where(padding: str, **kw) -> list[int]:
        out = pad_recording(click, 32000, padding, **kw)
        return out.nonzero().flatten()[::10].tolist(), out.numel()

    assert where("centre") == ([16000], 32000)  # 12000 zeros, the recording, 12000 zeros: the middle of the window
    assert where("start") == ([4000], 32000)
    assert where("end") == ([28000], 32000)
    assert where("tile") == ([4000, 12000, 20000, 28000], 32000)  # the sound four times, not where it was
    assert where("none") == ([4000], 8000)  # the recording's own length
    assert where("none", min_window=10000) == ([5000], 10000)  # too short for a spectrogram: centred in zeros
    odd = pad_recording(torch.ones(3), 6, "centre")
    assert odd.tolist() == [0, 1, 1, 1, 0, 0]  # the extra zero goes after


def test_windows_are_planned_from_the_recordings_length():
    assert windows_for(0.5, 2.0, 10) == 1 and windows_for(2.0, 2.0, 10) == 1
    assert windows_for(2.5, 2.0, 10) == 4  # 0.5 s of room: starts at least 0.2 s (a tenth of a window) apart
    assert windows_for(5.0, 2.0, 10) == 10 and windows_for(60.0, 2.0, 10) == 10  # ESC-50's 5 s keep all ten
    assert ClipPlan("even", 10).audio_starts(0.5, 2.0, "a") == [0.0]
    assert ClipPlan("random", 10).audio_starts(0.5, 2.0, "a") == [0.0]
    assert ClipPlan("even", 10).audio_starts(2.5, 2.0, "a") == pytest.approx([0.0625, 0.1875, 0.3125, 0.4375])
    assert ClipPlan("random", 10).audio_starts(2.5, 2.0, "a") == ClipPlan("random", 10).starts(2.5, 2.0, "a")[:4]
    assert ClipPlan("even", 10).audio_starts(12.0, 2.0, "a") == pytest.approx([0.5 + k for k in range(10)])


def test_a_short_recording_is_encoded_once_and_fills_its_slots(tmp_path, tiny_recipe, monkeypatch):
    short = write_tone_audio(tmp_path / "short.wav", 700.0, seconds=0.4)
    long = write_chirp_audio(tmp_path / "long.wav", 200.0, 3000.0, seconds=3.0)  # every window differs
    videos = [TaskVideo(str(short), 0, "train"), TaskVideo(str(long), 1, "train")]
    encoders = load_eval_encoders("random", tiny_recipe)  # window 1 s at 16 kHz
    seen = []
    real_forward = AudioFrontend.forward
    monkeypatch.setattr(AudioFrontend, "forward", lambda self, wave: seen.append(tuple(wave.shape)) or
                        real_forward(self, wave))
    plan = ClipPlan("random", 5)
    found = extract_clip_features(encoders, videos, plan, {"audio"}, torch.device("cpu"), audio_task=True,
                                  audio_seconds=1.0)["audio"]
    assert seen == [(1 + 5, 16000)]  # one window of the short recording, five of the long one, in one batch
    assert found.shape == (2, 5, encoders.model.audio.out_dim)
    assert all(torch.equal(found[0, k], found[0, 0]) for k in range(5))  # its one window fills the five slots
    assert len({tuple(row.tolist()) for row in found[1]}) == 5
    seen.clear()
    own = extract_clip_features(encoders, videos, plan, {"audio"}, torch.device("cpu"), audio_task=True,
                                audio_seconds=1.0, padding="none")["audio"]
    assert seen == [(1, 6400), (5, 16000)]  # padding none: the short one at its own 0.4 s, on its own
    assert not torch.equal(own[0, 0], found[0, 0]) and torch.equal(own[1], found[1])


# ------------------------------------------------------------------------------------------------ statistics


def test_the_frontend_fits_on_its_own_device_whatever_device_the_waves_are_on():
    """Issue 22: extraction moves the frontend to the GPU, a later fit handed it CPU waves. Here the frontend is
    on the meta device: a fit that left the waves on the CPU would mix devices in the STFT and fail."""
    for kind in ("log_mel", "avid_spectrogram"):
        frontend = build_audio_frontend(AudioFeatures(kind=kind), 16000).to("meta")
        frontend.fit(torch.randn(3, 16000))
        assert frontend.mean.device.type == "meta" and frontend.std.device.type == "meta"


def test_fit_on_waves_of_any_lengths_is_the_statistics_of_all_their_frames():
    frontend = build_audio_frontend(AudioFeatures(n_mels=16), 16000)
    waves = [torch.randn(16000) * 0.3, torch.randn(4000) * 0.1, torch.randn(9600)]
    frontend.fit(waves)
    frames = torch.cat([frontend.features(w[None]).flatten(0, 2) for w in waves])  # every frame × mel
    assert torch.allclose(frontend.mean, frames.mean(0), atol=1e-4)
    assert torch.allclose(frontend.std, frames.std(0), rtol=1e-4)
    same = build_audio_frontend(AudioFeatures(n_mels=16), 16000)
    same.fit(torch.stack([waves[0], waves[0]]), batch=1)  # in batches or not, one answer
    frontend.fit([waves[0], waves[0]])
    assert torch.allclose(same.mean, frontend.mean) and torch.allclose(same.std, frontend.std)


def _tone_csv(root: Path, per_class: int = 5) -> Path:
    """Two classes of short tones (0.3-0.7 s), no split column: five generated folds."""
    rows = []
    for c, tone in enumerate((400.0, 1500.0)):
        for i in range(per_class):
            name = f"{c}_{i}.wav"
            write_tone_audio(root / name, tone * (1 + 0.03 * i), seconds=0.3 + 0.1 * i)
            rows.append(f"{name},{'low' if c == 0 else 'high'}\n")
    (root / "tones.csv").write_text("path,label\n" + "".join(rows))
    return root / "tones.csv"


def test_all_splits_fit_the_random_frontend_once_and_the_json_line_says_what_was_probed(
        tmp_path, tiny_recipe, capsys, monkeypatch):
    table = _tone_csv(tmp_path)
    fits = []
    real_fit = AudioFrontend.fit
    monkeypatch.setattr(AudioFrontend, "fit", lambda self, waves, **kw: fits.append(len(waves)) or
                        real_fit(self, waves, **kw))
    args = ["probe", "--task", "csv", "--data-root", str(table), "--checkpoint", "random", "--recipe",
            str(tiny_recipe), "--splits", "all", "--results-dir", str(tmp_path / "results")]
    assert run(args) == 0
    records = _json_lines(capsys.readouterr().out)
    assert fits == [8]  # once, on the 8 train recordings of fold 1, for all five folds
    assert [r["split"] for r in records] == ["1", "2", "3", "4", "5", "mean"]
    assert (records[-1]["architecture"], records[-1]["padding"]) == (records[0]["architecture"], DEFAULT_PADDING)
    for record in records[:5]:
        assert record["architecture"] == "tiny_conv2d w8 on log_mel 32 mels at 16 kHz"
        assert (record["window_s"], record["padding"], record["windows"]) == (2.0, DEFAULT_PADDING, "by_length")
        assert record["audio_stats"] == "fitted on 8 train recordings of split 1"
        assert record["top1"] == 100.0  # two tones an octave and more apart


def test_the_cache_key_changes_with_the_padding(tmp_path, tiny_recipe, capsys, monkeypatch):
    table = _tone_csv(tmp_path)
    calls = []
    real_extract = probe_module.extract_clip_features
    monkeypatch.setattr(probe_module, "extract_clip_features", lambda *a, **k: calls.append(k["padding"]) or
                        real_extract(*a, **k))
    base = ["probe", "--task", "csv", "--data-root", str(table), "--checkpoint", "random", "--recipe",
            str(tiny_recipe), "--cache-dir", str(tmp_path / "features")]
    for padding in ("start", "start", "centre", "none", "start"):
        assert run([*base, "--audio-padding", padding]) == 0
    paddings = [r["padding"] for r in _json_lines(capsys.readouterr().out)]
    assert paddings == ["start", "start", "centre", "none", "start"]
    assert calls == ["start", "start", "centre", "centre", "none", "none"]  # train and test, once per padding
    assert run([*base, "--audio-padding", "middle"]) == 2
    assert "--audio-padding middle: choose start, centre, end, tile, none" in capsys.readouterr().err


def test_finetune_takes_short_recordings_at_their_own_lengths(tmp_path, tiny_recipe, capsys):
    table = _tone_csv(tmp_path)
    assert run(["probe", "--task", "csv", "--data-root", str(table), "--checkpoint", "random", "--recipe",
                str(tiny_recipe), "--protocol", "finetune", "--epochs", "1", "--warmup-epochs", "1",
                "--batch-size", "4", "--audio-padding", "none", "--no-cache"]) == 0
    [record] = _json_lines(capsys.readouterr().out)
    assert (record["protocol"], record["padding"], record["n_test"]) == ("finetune", "none", 2)
    assert 0 <= record["top1"] <= 100


# ------------------------------------------------------------------------------------------------ architecture


def test_a_random_baseline_names_its_architecture_or_asks_for_one(tmp_path, write_recipe, capsys):
    table = _tone_csv(tmp_path)
    base = ["probe", "--task", "csv", "--data-root", str(table), "--checkpoint", "random"]
    assert run(base) == 2
    assert "--checkpoint random needs the architecture to initialise: pass --recipe" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "mine"  # the run it is compared with: its recipe.yaml gives the architecture
    tree = tiny_recipe_dict(tmp_path / "unused", run_dir)
    tree["model"]["audio"] = {"name": "conv2d_10", "width": 8}
    tree["data"]["audio"] = {"kind": "avid_spectrogram"}
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(write_recipe(tree).read_text())
    assert run([*base, "--results-dir", str(run_dir)]) == 0
    record = _json_lines(capsys.readouterr().out)[0]
    assert record["architecture"] == "conv2d_10 w8 on avid_spectrogram 257 bins at 16 kHz"
    assert json.loads((run_dir / "results.jsonl").read_text().splitlines()[0])["architecture"] == record[
        "architecture"]


# ------------------------------------------------------------------------------------------------ spoken digits


def _digits(folder: Path, **options) -> Path:
    if not espeak_available():
        if os.environ.get("AVCLI_REQUIRE_ESPEAK"):
            pytest.fail("AVCLI_REQUIRE_ESPEAK is set but espeak-ng is not installed")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): the spoken-digits probe needs it")
    return generate_spoken_digits(folder, **options)


def _conv2d_10_defaults(table: Path, capsys) -> dict:
    assert run(["probe", "--task", "csv", "--data-root", str(table), "--checkpoint", "random",
                "--recipe", str(REPO / "recipes" / "xid.yaml"), "--no-cache"]) == 0
    [record] = _json_lines(capsys.readouterr().out)
    assert record["architecture"] == "conv2d_10 w64 on avid_spectrogram 257 bins at 24 kHz"
    assert (record["window_s"], record["padding"], record["chance"]) == (2.0, DEFAULT_PADDING, 10.0)
    return record


def test_spoken_digits_split_by_voice_random_conv2d_10_with_the_defaults(tmp_path, capsys):
    """200 train recordings of 10 voices, 80 test recordings of 4 other voices (one speaking rate, two pitches),
    each 0.25-0.9 s; AVID's Conv2D-10 and spectrogram, random init; every other option at its default."""
    record = _conv2d_10_defaults(_digits(tmp_path, **SMALL), capsys)
    assert (record["n_train"], record["n_test"]) == (200, 80)
    assert record["top1"] >= 85.0


@pytest.mark.slow
def test_the_full_spoken_digits_set_random_conv2d_10_with_the_defaults(tmp_path, capsys):
    """The benchmark's set: 900 train recordings (10 voices × 3 rates × 3 pitches), 360 test (4 other voices)."""
    record = _conv2d_10_defaults(_digits(tmp_path), capsys)
    assert (record["n_train"], record["n_test"]) == (900, 360)
    assert record["top1"] >= 85.0
