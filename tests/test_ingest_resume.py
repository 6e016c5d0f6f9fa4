"""Ingest at scale: kill -9 at random moments then the same command gives the uninterrupted catalog; shards merge
into the same catalog; unchanged files are skipped; stats reports what the catalog holds."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from avcli.cli import run
from avcli.data.catalog import Catalog

from media_helpers import write_counter_video


def _folder(root: Path, n: int = 10, frames: int = 20, size: tuple[int, int] = (48, 32)) -> Path:
    folder = root / "in"
    (folder / "sub dir").mkdir(parents=True)
    for k in range(n):
        where = folder / "sub dir" if k % 3 == 0 else folder
        write_counter_video(where / f"clip_{k:02d}.mp4", frames=frames + 3 * k, fps=25, size=size, clicks_s=(0.2,))
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    return folder


def _rows(catalog: Path) -> list[dict]:
    with Catalog(catalog) as c:
        return c.rows()


def _ingest_cmd(folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "avcli", "ingest", str(folder), "--out", str(out), "--workers", "2", *extra]


def test_kill_9_at_random_points_then_rerun_equals_an_uninterrupted_ingest(tmp_path):
    folder = _folder(tmp_path, n=24, frames=100, size=(160, 120))
    reference = subprocess.run(_ingest_cmd(folder, tmp_path / "ref"), capture_output=True, text=True)
    assert reference.returncode == 3, reference.stderr  # broken.mp4 is rejected
    chance = random.Random(7)
    rows_after_kill = []
    for round_ in range(4):
        proc = subprocess.Popen(
            _ingest_cmd(folder, tmp_path / "c"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )
        # kill -9 the whole group (parent and workers, no chance to clean up): in the first round at a random
        # moment, later right after a random number of rows were reported committed, i.e. mid-way through the
        # work that follows them
        if round_ == 0:
            time.sleep(chance.uniform(0.2, 1.0))
        else:
            wanted = chance.randint(1, 8)
            for seen, line in enumerate(proc.stdout, 1):
                if seen >= wanted:
                    break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if (tmp_path / "c" / "catalog.sqlite").exists():
            rows_after_kill.append(len(_rows(tmp_path / "c")))
    print("rows after each kill:", rows_after_kill)
    assert len(rows_after_kill) >= 3 and any(0 < n < 25 for n in rows_after_kill)  # really cut short
    final = subprocess.run(_ingest_cmd(folder, tmp_path / "c"), capture_output=True, text=True)
    assert final.returncode == 3, final.stderr
    assert _rows(tmp_path / "c") == _rows(tmp_path / "ref")
    media = tmp_path / "c" / "media"
    assert not list(media.glob("*/*.partial*"))
    copies = sorted(p.relative_to(tmp_path / "c").as_posix() for p in media.glob("*/*.mkv"))
    assert copies == sorted(r["media"]["path"] for r in _rows(tmp_path / "c") if r["media"])
    for path in copies:  # every copy is whole: it decodes to its recorded length
        with av.open(str(tmp_path / "c" / path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        row = next(r for r in _rows(tmp_path / "c") if r["media"] and r["media"]["path"] == path)
        assert frames == pytest.approx(row["media"]["duration_s"] * row["media"]["fps"], abs=1)


def test_shards_merge_into_the_catalog_of_one_run(tmp_path, capsys):
    folder = _folder(tmp_path, n=6)
    assert run(["ingest", str(folder), "--out", str(tmp_path / "all"), "--workers", "1"]) == 3
    shard_rows = []
    for i in range(3):
        run(["ingest", str(folder), "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/3", "--workers", "1"])
        shard_rows.append({r["path"] for r in _rows(tmp_path / f"s{i}")})
    assert sum(len(s) for s in shard_rows) == 7 and set.union(*shard_rows) == {r["path"] for r in _rows(tmp_path / "all")}
    capsys.readouterr()
    assert run(["ingest", "merge", *(str(tmp_path / f"s{i}") for i in range(3)), "--out", str(tmp_path / "m")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 7
    assert _rows(tmp_path / "m") == _rows(tmp_path / "all")
    with Catalog(tmp_path / "m") as merged:
        assert all(Path(item.source).is_file() for item in merged.items())
    assert run(["ingest", "merge", str(tmp_path / "s0"), str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2


def test_rerun_skips_unchanged_and_redoes_changed_or_lost_copies(tmp_path, capsys):
    folder = _folder(tmp_path, n=3)
    out = tmp_path / "c"
    run(["ingest", str(folder), "--out", str(out), "--workers", "1"])
    capsys.readouterr()
    run(["ingest", str(folder), "--out", str(out), "--workers", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4 and all(line.get("unchanged") for line in lines)
    # a changed file (new content, same name) and a deleted copy are both redone
    write_counter_video(folder / "clip_01.mp4", frames=60, fps=25)
    lost = next(r for r in _rows(out) if r["path"].endswith("clip_02.mp4"))["media"]["path"]
    (out / lost).unlink()
    run(["ingest", str(folder), "--out", str(out), "--workers", "1"])
    redone = {Path(x["path"]).name for x in map(json.loads, capsys.readouterr().out.splitlines()) if not x.get("unchanged")}
    assert redone == {"clip_01.mp4", "clip_02.mp4"}
    assert (out / lost).is_file()
    row = next(r for r in _rows(out) if r["path"].endswith("clip_01.mp4"))
    assert row["media"]["duration_s"] == pytest.approx(60 / 25, abs=0.07)


def test_changed_options_on_an_existing_catalog_are_refused(tmp_path, capsys):
    folder = _folder(tmp_path, n=1)
    run(["ingest", str(folder), "--out", str(tmp_path / "c"), "--workers", "1"])
    capsys.readouterr()
    assert run(["ingest", str(folder), "--out", str(tmp_path / "c"), "--short-side", "64"]) == 2
    assert "different options" in capsys.readouterr().err


def test_stats_reports_the_catalog(tmp_path, capsys):
    folder = _folder(tmp_path, n=2)
    run(["ingest", str(folder), "--out", str(tmp_path / "c"), "--workers", "1"])
    capsys.readouterr()
    assert run(["ingest", "stats", str(tmp_path / "c"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["ok"] == 2 and stats["rejected"] == 1 and stats["files"] == 3
    assert list(stats["reject_reasons"].values()) == [1]
    assert stats["hours_ok"] == pytest.approx((20 + 23) / 25 / 3600, abs=1e-4)
    assert run(["ingest", "stats", str(tmp_path / "nope")]) == 2


def test_max_reject_fraction_sets_the_exit_code(tmp_path):
    folder = _folder(tmp_path, n=3)  # 1 of 4 inputs is rejected
    assert run(["ingest", str(folder), "--out", str(tmp_path / "a"), "--workers", "1"]) == 3
    assert run(["ingest", str(folder), "--out", str(tmp_path / "b"), "--max-reject-fraction", "0.3"]) == 0


def test_symlinks_are_followed_once(tmp_path, capsys):
    folder = _folder(tmp_path, n=2)
    (folder / "loop").symlink_to(folder)  # a cycle
    (folder / "again.mp4").symlink_to(folder / "clip_01.mp4")  # the same file twice
    run(["ingest", str(folder), "--out", str(tmp_path / "c"), "--workers", "1"])
    paths = [json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()]
    assert len(paths) == len(set(paths)) == 3


def test_a_catalog_appears_only_with_its_schema(tmp_path, monkeypatch):
    """Killed while creating the database (the CI flake this pins: a `catalog.sqlite` without its `meta` table),
    a catalog must not exist at all; leftovers of dead creators are cleared and the next creation works."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "catalog.sqlite.creating-999999999").write_bytes(b"half")  # a creator that died (no such pid)

    def dies(self):
        raise KeyboardInterrupt  # stands in for the kill: after the file exists, before the schema is committed

    monkeypatch.setattr(Catalog, "_create_schema", dies)
    with pytest.raises(KeyboardInterrupt):
        Catalog(root, create=True)
    assert not (root / "catalog.sqlite").exists()
    monkeypatch.undo()
    with Catalog(root, create=True) as c:
        c.upsert([{"item_id": "a", "path": "/x.mp4", "status": "ok"}])
    assert sorted(p.name for p in root.iterdir() if "creating" in p.name) == []
    assert [r["item_id"] for r in _rows(root)] == ["a"]
