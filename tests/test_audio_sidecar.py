"""The WAV beside each training copy: same samples as the copy's FLAC, read by offset; lost, skipped or damaged
sidecars are handled (redone on re-ingest, decoded from the FLAC instead)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from avcli.cli import run
from avcli.data.catalog import Catalog
from avcli.media.clip_reader import ClipReader
from avcli.media.pcm_sidecar import PcmSidecar

from media_helpers import write_counter_video


def _ingest(tmp_path: Path, *extra: str, n: int = 2) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for k in range(n):
        write_counter_video(folder / f"v{k}.mp4", frames=60 + 10 * k, fps=25, clicks_s=(0.3 + 0.2 * k, 1.7))
    out = tmp_path / "c"
    assert run(["ingest", str(folder), "--out", str(out), "--workers", "1", *extra]) == 0
    return out


def _items(out: Path):
    with Catalog(out) as c:
        return c.items()


def test_sidecar_holds_the_samples_of_the_flac_track(tmp_path, capsys):
    out = _ingest(tmp_path)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2
    for item in _items(out):
        assert item.audio_sidecar == str(Path(item.source).with_suffix(".wav"))
        with wave.open(item.audio_sidecar) as w:  # a standard WAV any tool opens
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
            assert w.getnframes() == round(item.duration_s * 24000)
        with ClipReader(item.source, item.video_stream, item.audio_stream) as flac, ClipReader(
            item.source, item.video_stream, item.audio_stream, audio_sidecar=item.audio_sidecar
        ) as pcm:
            assert pcm.pcm is not None and flac.pcm is None
            # windows inside, straddling the start and the end, at the native rate and resampled
            for t, seconds, rate in ((0.0, 1.0, 24000), (0.31, 0.5, 24000), (-0.2, 0.6, 24000),
                                     (item.duration_s - 0.3, 0.8, 24000), (0.5, 1.0, 16000)):
                a, b = flac.read_audio(t, seconds, rate), pcm.read_audio(t, seconds, rate)
                assert a.shape == b.shape == (round(seconds * rate),)
                if t == 0.0:
                    assert np.abs(a.numpy()).max() > 0.5  # the click at 0.3 s (0.5 s) is there
                np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sidecar_reads_zeros_outside_and_refuses_other_files(tmp_path):
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.array([1000, -2000, 3000], "<i2").tobytes())
    side = PcmSidecar(path)
    np.testing.assert_array_equal(side.read(-2, 5), np.array([0, 0, 1000, -2000, 3000, 0, 0], np.float32) / 32768)
    side.close()
    stereo = tmp_path / "s.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\0" * 8)
    with pytest.raises(ValueError, match="s.wav"):
        PcmSidecar(stereo)


def test_lost_sidecar_is_redone_and_a_damaged_one_falls_back_to_the_flac(tmp_path, capsys):
    out = _ingest(tmp_path)
    capsys.readouterr()
    first, second = _items(out)
    expected = ClipReader(second.source, second.video_stream, second.audio_stream).read_audio(0.2, 1.0, 24000)
    Path(first.audio_sidecar).unlink()
    Path(second.audio_sidecar).write_bytes(b"junk")  # damaged: readers decode the FLAC instead
    with ClipReader(second.source, second.video_stream, second.audio_stream, audio_sidecar=second.audio_sidecar) as r:
        assert r.pcm is None
        np.testing.assert_array_equal(r.read_audio(0.2, 1.0, 24000).numpy(), expected.numpy())
    assert run(["ingest", str(tmp_path / "in"), "--out", str(out), "--workers", "1"]) == 0
    redone = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["path"]).name for r in redone if not r.get("unchanged")] == ["v0.mp4"]
    assert Path(first.audio_sidecar).is_file()


def test_no_audio_sidecar_option_and_older_catalogs(tmp_path, capsys):
    out = _ingest(tmp_path, "--no-audio-sidecar", n=1)
    (item,) = _items(out)
    assert item.audio_sidecar is None and not list(out.glob("media/*/*.wav"))
    capsys.readouterr()
    # a catalog written before sidecars existed has no such option stored: it counts as "no sidecar"
    with Catalog(out) as c:
        stored = c.get_meta("ingest_options")
        del stored["transcode"]["audio_sidecar"]
        c.set_meta("ingest_options", stored)
    assert run(["ingest", str(tmp_path / "in"), "--out", str(out), "--no-audio-sidecar"]) == 0
    assert run(["ingest", str(tmp_path / "in"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "transcode.audio_sidecar: False now True" in err and "--no-audio-sidecar" in err
