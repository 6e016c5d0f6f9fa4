"""`avcli ingest`: every input ends as one catalog row (ok or rejected with a reason), JSON lines on stdout."""

from __future__ import annotations

import io
import json
import sqlite3
import sys

import pytest

from avcli.cli import run
from avcli.data.catalog import Catalog

from conftest import SHARED_MEDIA
from media_helpers import write_counter_video

needs_shared = pytest.mark.skipif(not SHARED_MEDIA.exists(), reason="../shared/data/media is not beside the repo")


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


def test_rerun_skips_unchanged_files_and_keeps_rows(tmp_path, capsys):
    write_counter_video(tmp_path / "a.mp4", frames=30)
    write_counter_video(tmp_path / "b.mp4", frames=30)
    assert run(["ingest", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--out", str(tmp_path / "c")]) == 0
    assert len(_lines(capsys.readouterr().out)) == 2
    assert run(["ingest", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--out", str(tmp_path / "c")]) == 0
    assert _lines(capsys.readouterr().out) == []
    rows = sqlite3.connect(tmp_path / "c" / "catalog.sqlite").execute("SELECT COUNT(*) FROM items").fetchone()
    assert rows == (2,)


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
