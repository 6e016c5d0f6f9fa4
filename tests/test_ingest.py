"""`avcli ingest`: every input ends as one catalog row (ok or rejected with a reason), JSON lines on stdout."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
import torchaudio

from avcli.cli import run
from avcli.data.catalog import Catalog

from conftest import SHARED_MEDIA, needs_shared
from media_helpers import write_counter_video



def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@needs_shared
def test_real_media_folder_every_file_accounted_for(tmp_path, capsys):
    code = run(["ingest", str(SHARED_MEDIA), "--out", str(tmp_path / "c")])
    captured = capsys.readouterr()
    assert code == 3  # some inputs are rejected
    assert "Traceback" not in captured.err
    rows = _lines(captured.out)
    inputs = sorted(p.name for p in SHARED_MEDIA.iterdir() if not p.name.startswith("."))
    assert sorted(r["path"].split("/")[-1] for r in rows) == inputs
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert by_name["guitar.wav"]["status"] == "rejected"
    assert by_name["guitar.wav"]["reject_reason"] == "no video stream"
    assert by_name["bug_video_640.mp4"]["reject_reason"] == "no audio stream"
    assert by_name["fire2.mp4"]["rotation"] in (180, -180)
    assert by_name["no_duration.webm"]["status"] == "ok" and by_name["no_duration.webm"]["duration_s"] > 4
    assert by_name["nasa_13013.mp4"]["width"] == 480  # the highest-resolution video stream, as FFmpeg picks
    with Catalog(tmp_path / "c") as catalog:
        assert len(catalog.items(status=None)) == len(inputs)
        assert all(i.reject_reason for i in catalog.items(status="rejected"))


@needs_shared
def test_allow_no_audio_keeps_silent_videos(tmp_path, capsys):
    run(["ingest", str(SHARED_MEDIA / "bug_video_640.mp4"), "--out", str(tmp_path / "c"), "--allow-no-audio"])
    (row,) = _lines(capsys.readouterr().out)
    assert row["status"] == "ok"


def test_bad_inputs_get_reasons(tmp_path, capsys):
    folder = tmp_path / "in put"  # a space in the path
    folder.mkdir()
    (folder / "notes.txt").write_text("not a video at all\n" * 100)
    (folder / "empty.mp4").write_bytes(b"")
    write_counter_video(folder / "short.mp4", frames=5, fps=25)
    write_counter_video(folder / "fine ü.mp4", frames=30, fps=25)
    code = run(["ingest", str(folder), "--out", str(tmp_path / "c"), "--min-seconds", "0.5"])
    rows = {r["path"].split("/")[-1]: r for r in _lines(capsys.readouterr().out)}
    assert code == 3
    assert rows["notes.txt"]["reject_reason"] == "not a media file"
    assert rows["empty.mp4"]["reject_reason"] == "zero-length file"
    assert rows["short.mp4"]["reject_reason"].startswith("shorter than one clip")
    assert rows["fine ü.mp4"]["status"] == "ok"


def test_paths_from_stdin(tmp_path, capsys, monkeypatch):
    write_counter_video(tmp_path / "a.mp4", frames=30)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tmp_path / 'a.mp4'}\n\n"))
    assert run(["ingest", "-", "--out", str(tmp_path / "c")]) == 0
    assert [r["status"] for r in _lines(capsys.readouterr().out)] == ["ok"]


def test_missing_input_and_no_input_are_usage_errors(tmp_path, capsys):
    assert run(["ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert run(["ingest", "--out", str(tmp_path / "c")]) == 2


def test_synthetic_world_is_generated_and_labelled(tmp_path, capsys):
    assert run(["ingest", "--synthetic", "8", "--seed", "2", "--out", str(tmp_path / "w")]) == 0
    rows = _lines(capsys.readouterr().out)
    assert len(rows) == 8 and all(r["status"] == "ok" and r["label"] and r["title_id"] for r in rows)
    with Catalog(tmp_path / "w") as catalog:
        items = catalog.items()
    assert {i.split for i in items} == {"train", "test"}
    assert all("faulty" in i.extra for i in items)


@needs_shared
@pytest.mark.parametrize("name", ["fire2.mp4", "no_duration.webm", "nasa_13013.mp4", "bad-keyframes.mp4", "hevc.ts"])
def test_training_copies_match_a_direct_decode_of_the_source(tmp_path, capsys, name):
    """The copy holds the same picture and sound on the same timeline as the source (rotation, VFR, missing
    duration, several streams, wrong keyframe flags, MPEG-TS start offset)."""
    from avcli.media.clip_reader import ClipReader

    assert run(["ingest", str(SHARED_MEDIA / name), "--out", str(tmp_path / "c"), "--workers", "1"]) == 0
    with Catalog(tmp_path / "c") as catalog:
        (copy,) = catalog.items()
        (source,) = [r for r in catalog.rows()]
    assert copy.source != source["path"] and copy.fps == 16 and min(copy.width, copy.height) == 128
    assert copy.duration_s == pytest.approx(source["duration_s"], abs=1 / 16 + 0.05)
    t = min(1.0, copy.duration_s / 3)
    with ClipReader(copy.source, copy.video_stream, copy.audio_stream) as from_copy, ClipReader(
        source["path"], source["video_stream"], source["audio_stream"]
    ) as from_source:
        a = from_copy.read_video(t, 4, 8.0, short_side=128).float()
        b = from_source.read_video(t, 4, 8.0, short_side=128).float()
        assert a.shape == b.shape
        assert (a - b).abs().mean() < 6  # lossy H.264 at crf 23 and a different scaler, same frames
        sound_a = from_copy.read_audio(t, 1.0, 16000)
        sound_b = from_source.read_audio(t, 1.0, 16000)
    if sound_b.abs().max() > 1e-3:  # (no_duration.webm is silent)
        # same sound on the same timeline: correlated below 4 kHz within a sample (62 µs at 16 kHz) — the two
        # resampling paths (FFmpeg to 24 kHz then torchaudio, or torchaudio alone) differ by a fraction of one
        low_a, low_b = (torchaudio.functional.lowpass_biquad(x, 16000, 4000)[8:-8] for x in (sound_a, sound_b))
        best = max(torch.corrcoef(torch.stack([low_a, torch.roll(low_b, lag)]))[0, 1] for lag in (-1, 0, 1))
        assert best > 0.95
    else:
        assert "silent_audio" in source["flags"]


@needs_shared
def test_theora_file_with_empty_packets_is_ingested_whole(tmp_path, capsys):
    run(["ingest", str(SHARED_MEDIA / "mov_bbb.ogg"), "--out", str(tmp_path / "c"), "--workers", "1"])
    (row,) = _lines(capsys.readouterr().out)
    assert row["status"] == "ok" and row["usable_s"] == pytest.approx(10.0, abs=0.1)
    assert "partial_decode" not in row.get("flags", [])


def test_titles_and_dataset_layout_are_recorded(tmp_path, capsys):
    tv = tmp_path / "tv" / "The Show" / "Season 01"
    tv.mkdir(parents=True)
    write_counter_video(tv / "The Show - S01E02.mp4", frames=20)
    movie = tmp_path / "tv" / "A Movie (2004)"
    movie.mkdir()
    write_counter_video(movie / "CD1.mp4", frames=20)
    assert run(["ingest", str(tmp_path / "tv"), "--out", str(tmp_path / "c"), "--workers", "1"]) == 0
    rows = {Path(r["path"]).name: r for r in _lines(capsys.readouterr().out)}
    assert rows["The Show - S01E02.mp4"]["title_id"] == "the-show/s01e02"
    assert (rows["The Show - S01E02.mp4"]["season"], rows["The Show - S01E02.mp4"]["episode"]) == (1, 2)
    assert rows["CD1.mp4"]["title_id"] == "a-movie-2004"
    # a CSV overrides what the folders say; re-running refreshes the annotation without transcoding again
    (tmp_path / "titles.csv").write_text(f"path,title_id\n{movie / 'CD1.mp4'},my-title\n")
    run(["ingest", str(tmp_path / "tv"), "--out", str(tmp_path / "c"), "--titles", str(tmp_path / "titles.csv")])
    rows = {Path(r["path"]).name: r for r in _lines(capsys.readouterr().out)}
    assert rows["CD1.mp4"]["title_id"] == "my-title" and rows["CD1.mp4"]["unchanged"]


@pytest.mark.skipif(not (SHARED_MEDIA.parent / "splits").exists(), reason="../shared/data/splits missing")
def test_ucf101_layout_labels_and_official_splits(tmp_path, capsys):
    root = tmp_path / "UCF101"
    (root / "ApplyEyeMakeup").mkdir(parents=True)
    write_counter_video(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi", frames=20)
    write_counter_video(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi", frames=20)
    meta = SHARED_MEDIA.parent / "splits" / "ucf101" / "ucfTrainTestlist"
    assert run(["ingest", str(root), "--out", str(tmp_path / "c"), "--layout", "ucf101", "--layout-meta", str(meta)]) == 0
    rows = {Path(r["path"]).name: r for r in _lines(capsys.readouterr().out)}
    assert rows["v_ApplyEyeMakeup_g08_c01.avi"]["label"] == "ApplyEyeMakeup"
    assert rows["v_ApplyEyeMakeup_g08_c01.avi"]["split"] == "train"
    assert rows["v_ApplyEyeMakeup_g01_c01.avi"]["split"] == "test"  # groups 1-7 are split 1's test set
    with Catalog(tmp_path / "c") as catalog:
        extra = {Path(i.path).name: i.extra for i in catalog.items()}
    assert extra["v_ApplyEyeMakeup_g08_c01.avi"]["splits"] == {"1": "train", "2": "test", "3": "train"}
    assert run(["ingest", str(root), "--out", str(tmp_path / "d"), "--layout", "imagenet"]) == 2
