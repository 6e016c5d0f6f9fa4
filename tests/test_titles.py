"""Titles from paths (TV episodes, movies, anything else) and from a user's CSV; pure string work, no media."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from avcli.data.titles import TitleTable, load_titles_csv, parse_title, resolve_title, slug
from avcli.errors import EXIT_USAGE, UsageError


def _touch(root: Path, rel: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


@pytest.mark.parametrize(
    "rel, title_id, show_id, season, episode",
    [
        ("The Office/Season 01/The Office - S01E03.mkv", "the-office/s01e03", "the-office", 1, 3),
        ("The.Office/S02/The.Office.S02E11.720p.HDTV.x264.mkv", "the-office/s02e11", "the-office", 2, 11),
        ("Doctor Who/Doctor Who 1x03.mkv", "doctor-who/s01e03", "doctor-who", 1, 3),
        ("show_s01e03_title.mp4", "show/s01e03", "show", 1, 3),
        ("misc/breaking_bad_S05E14_ozymandias.mp4", "breaking-bad/s05e14", "breaking-bad", 5, 14),
        ("Sherlock/Series 3/s03e01.mkv", "sherlock/s03e01", "sherlock", 3, 1),  # show from above the season
        ("Fargo/FARGO.s1.e2.mkv", "fargo/s01e02", "fargo", 1, 2),
        ("Lost/Season 2/03 - Orientation.mkv", "lost/s02e03", "lost", 2, 3),  # bare number in a season folder
        ("Lost/Season 2/Episode 4.mkv", "lost/s02e04", "lost", 2, 4),
        ("Big Show/S01E12 - Finale.mkv", "big-show/s01e12", "big-show", 1, 12),  # nothing before the token
        ("Show Name/Season 1/Other Name - S01E05.mkv", "show-name/s01e05", "show-name", 1, 5),  # folder wins
        ("Show/Show.S01E03E04.mkv", "show/s01e03", "show", 1, 3),  # a double episode keeps the first
    ],
)
def test_episodes(tmp_path, rel, title_id, show_id, season, episode):
    path = _touch(tmp_path, rel)
    assert parse_title(path, tmp_path) == {
        "title_id": title_id, "show_id": show_id, "season": season, "episode": episode,
    }


def test_resolution_and_words_are_not_episode_tokens(tmp_path):
    for rel in ("clips/video_1920x1080.mp4", "clips/hds01e03x.mp4", "clips/xmas1x2.mp4"):
        out = parse_title(_touch(tmp_path, rel), tmp_path)
        assert out["episode"] is None and out["show_id"] is None, rel


@pytest.mark.parametrize(
    "rel, title_id",
    [
        ("Movies/Movie Name (2004)/movie.mkv", "movie-name-2004"),
        ("Movies/Movie.Name.2004.1080p.BluRay.x264.mkv", "movie-name-2004"),
        ("Movies/Movie_Name_2004.mkv", "movie-name-2004"),
        ("Movies/Movie Name [2004]/feature.mp4", "movie-name-2004"),
        ("Movies/Movie.Name.2004.1080p.BluRay-GRP/grp-moviename.mkv", "movie-name-2004"),  # release folder
        ("Movies/2001.A.Space.Odyssey.1968.720p.mkv", "2001-a-space-odyssey-1968"),  # a leading year is a name
        ("Movies/Blade Runner 2049 (2017).mkv", "blade-runner-2049-2017"),  # a future "year" is a name too
        ("Movies/Amélie (2001)/Amélie.mkv", "amélie-2001"),
        ("Filme/Das Boot (1981).mkv", "das-boot-1981"),
        ("映画/千と千尋の神隠し (2001)/a.mkv", "千と千尋の神隠し-2001"),
    ],
)
def test_movies(tmp_path, rel, title_id):
    assert parse_title(_touch(tmp_path, rel), tmp_path) == {
        "title_id": title_id, "show_id": None, "season": None, "episode": None,
    }


def test_movie_parts_share_one_title(tmp_path):
    parts = ["Movie (2004)/CD1.avi", "Movie (2004)/CD2.avi", "Movies/Movie.2004.DVDRip.CD1.avi",
             "Movies/Movie.2004.DVDRip.cd2.avi", "Movies/Movie (2004) Part 2.mkv"]
    assert {parse_title(_touch(tmp_path, rel), tmp_path)["title_id"] for rel in parts} == {"movie-2004"}


def test_other_files_are_their_own_titles(tmp_path):
    a = parse_title(_touch(tmp_path, "cam/a/clip.mp4"), tmp_path)
    b = parse_title(_touch(tmp_path, "cam/b/clip.mp4"), tmp_path)
    assert a == {"title_id": "cam/a/clip", "show_id": None, "season": None, "episode": None}
    assert b["title_id"] == "cam/b/clip"
    # A year-named folder of home videos is not one movie: only "(2004)" or release words make a folder a title.
    assert parse_title(_touch(tmp_path, "Holiday 2004/beach.mp4"), tmp_path)["title_id"] == "holiday-2004/beach"
    assert parse_title(_touch(tmp_path, "2004/beach.mp4"), tmp_path)["title_id"] == "2004/beach"
    # Relative to the root, not to the file system: the same tree elsewhere gives the same ids.
    other = tmp_path / "elsewhere"
    assert parse_title(_touch(other, "cam/a/clip.mp4"), other)["title_id"] == "cam/a/clip"
    # No root: the whole path, still a slug per folder.
    assert parse_title(Path("x/Some Clip.MP4"), None)["title_id"] == "x/some-clip"


def test_season_folder_without_episode_numbers_keeps_show_and_season(tmp_path):
    out = parse_title(_touch(tmp_path, "Show/Season 03/behind the scenes.mkv"), tmp_path)
    assert out == {"title_id": "show/season-03/behind-the-scenes", "show_id": "show", "season": 3, "episode": None}


def test_slug():
    assert slug("Amélie (2001)") == "amélie-2001"
    assert slug(unicodedata.normalize("NFD", "Amélie (2001)")) == "amélie-2001"  # macOS decomposed names
    assert slug("  Hello,   World!! ") == "hello-world"
    assert slug("Ça_va--bien") == "ça-va-bien"
    assert slug("Крёстный отец") == "крёстный-отец"
    assert slug("???") == ""


def test_non_ascii_show(tmp_path):
    out = parse_title(_touch(tmp_path, "Élite/Temporada 1/Élite - S01E02.mkv"), tmp_path)
    assert out["title_id"] == "élite/s01e02" and out["show_id"] == "élite"


# -------------------------------------------------------------------------------------------------- CSV


def test_titles_csv_relative_and_absolute_paths(tmp_path):
    a = _touch(tmp_path, "media/a.mp4")
    b = _touch(tmp_path, "media/b.mp4")
    c = _touch(tmp_path, "media/c.mp4")
    table_csv = tmp_path / "meta" / "titles.csv"
    table_csv.parent.mkdir()
    table_csv.write_text(
        "\ufeffPath,title_id,show_id,season,episode,notes\n"  # Excel's BOM, a capitalised header, an extra column
        "../media/a.mp4,my-show/s01e01,my-show,1,1,first\n"
        f"{b},film-x,,,,\n"
        "\n"
        "../media/./missing.mp4,gone,,,,\n",
        encoding="utf-8",
    )
    table = load_titles_csv(table_csv)
    assert isinstance(table, TitleTable) and len(table) == 3
    assert table.lookup(a) == {"title_id": "my-show/s01e01", "show_id": "my-show", "season": 1, "episode": 1}
    assert table.lookup(tmp_path / "media" / ".." / "media" / "b.mp4") == {"title_id": "film-x"}
    assert table.lookup(c) is None
    # The CSV overrides the guess only where it has a value.
    assert resolve_title(b, tmp_path, table) == {"title_id": "film-x", "show_id": None, "season": None, "episode": None}
    assert resolve_title(c, tmp_path, table)["title_id"] == "media/c"


def test_titles_csv_missing_file(tmp_path):
    with pytest.raises(UsageError) as info:
        load_titles_csv(tmp_path / "nope.csv")
    message = str(info.value)
    assert "nope.csv" in message and "--titles" in message and "\n" not in message
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("text", ["title_id,season\nx,1\n", "", "a.mp4,x\n"])
def test_titles_csv_without_path_column(tmp_path, text):
    bad = tmp_path / "titles.csv"
    bad.write_text(text)
    with pytest.raises(UsageError, match=r"titles\.csv: no 'path' column .*path,title_id,show_id,season,episode"):
        load_titles_csv(bad)


def test_titles_csv_bad_integer_names_file_and_line(tmp_path):
    bad = tmp_path / "titles.csv"
    bad.write_text("path,title_id,season,episode\na.mp4,x,1,2\nb.mp4,y,one,3\n")
    with pytest.raises(UsageError) as info:
        load_titles_csv(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}:3: season 'one' is not a whole number") and "\n" not in message


def test_titles_csv_conflicting_duplicate_and_empty_path(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("path,title_id\na.mp4,x\n./a.mp4,x\nsub/../a.mp4,y\n")
    with pytest.raises(UsageError, match=r"dup\.csv:4: sub/\.\./a\.mp4 is already listed on line 2"):
        load_titles_csv(dup)
    empty = tmp_path / "empty.csv"
    empty.write_text("path,title_id\n,x\n")
    with pytest.raises(UsageError, match=r"empty\.csv:2: empty 'path' cell"):
        load_titles_csv(empty)


def test_titles_csv_not_utf8(tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("path,title_id\nAmélie.mkv,amélie\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"latin1\.csv: not UTF-8"):
        load_titles_csv(bad)
