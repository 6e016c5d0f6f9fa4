"""Titles: which movie or episode a file belongs to, from its path or from a user's CSV.

Pretraining on movies and TV shows (METHODS.md §5) needs to know which files are parts of one title (a movie cut
into CD1/CD2, an episode) and which episodes share a show. `parse_title` guesses this from the common naming
schemes of media libraries; `load_titles_csv` reads an explicit table that overrides the guess. Both are pure
string work: nothing here opens a media file or touches the file system except to read the CSV.
"""

from __future__ import annotations

import csv
import datetime
import os
import re
import unicodedata
from pathlib import Path

from avcli.errors import UsageError

TITLE_KEYS = ("title_id", "show_id", "season", "episode")

# Episode tokens in a file name. The look-behind keeps "1920x1080" and "HDS01E03" from matching mid-word;
# "_" counts as a separator because "show_s01e03" is common.
_SXXEYY = re.compile(r"(?<![^\W_])s(\d{1,3})[ ._-]?e(\d{1,4})(?!\d)", re.IGNORECASE)
_NXM = re.compile(r"(?<![^\W_])(\d{1,2})x(\d{1,3})(?!\d)", re.IGNORECASE)
# Season folders: "Season 01", "Season.1", "Series 2", "S01".
_SEASON_DIR = re.compile(r"^(?:season|series)[ ._-]*(\d{1,3})$|^s(\d{1,3})$", re.IGNORECASE)
# An episode number on its own inside a season folder: "E03 - Pilot", "Episode 3", "03 - Pilot".
_BARE_EPISODE = re.compile(r"^(?:e|ep|episode)?[ ._-]*(\d{1,3})(?:$|[ ._-])", re.IGNORECASE)
# A release year with something before it: "Movie Name (2004)", "Movie.Name.2004.1080p".
_YEAR = re.compile(r"(?<![^\W_])[(\[]?((?:19|20)\d\d)[)\]]?(?=$|[\W_])")
# Disc or part markers that must not split one movie into several titles.
_PART = re.compile(r"(?:^|[ ._-]+)[(\[]?(?:cd|dvd|disc|disk|part|pt)[ ._-]?\d{1,2}[)\]]?$", re.IGNORECASE)
# Release-scene words that follow the year in a folder name ("Movie.2004.1080p.BluRay-GRP").
_RELEASE_WORD = re.compile(
    r"^(?:\d{3,4}p|4k|uhd|bluray|blu-ray|bdrip|brrip|web|web-?dl|webrip|hdtv|dvdrip|dvd|remux|x26[45]|h\.?26[45]"
    r"|hevc|xvid|proper|repack|extended|unrated|remastered)",
    re.IGNORECASE,
)


def slug(text: str) -> str:
    """Lowercase; runs of anything but letters and digits (any script) become one '-'."""
    text = unicodedata.normalize("NFC", text).lower()  # macOS file names arrive decomposed (NFD)
    out = "".join(ch if ch.isalnum() else "-" for ch in text)
    return re.sub(r"-+", "-", out).strip("-")


def clean_name(text: str) -> str:
    """'Show.Name_' → 'Show Name': dots and underscores to spaces, trimmed, trailing ' -' removed."""
    text = re.sub(r"[._]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"(?:\s*-)+$", "", text).strip()


def _relative(path: Path, root: Path | None) -> Path:
    """`path` relative to `root` when it lies under it (compared without resolving symlinks, then resolved)."""
    if root is None:
        return path
    for p, r in ((Path(os.path.abspath(path)), Path(os.path.abspath(root))), (path.resolve(), root.resolve())):
        try:
            return p.relative_to(r)
        except ValueError:
            pass
    return path


def _season_of(folder: str) -> int | None:
    match = _SEASON_DIR.match(folder.strip())
    return int(match.group(1) or match.group(2)) if match else None


def _episode(path: Path) -> dict | None:
    """Show, season and episode of a TV file, or None when the path does not look like one."""
    stem = path.stem
    parents = path.parent.parts
    folder_season = _season_of(parents[-1]) if parents else None
    token = _SXXEYY.search(stem) or _NXM.search(stem)
    if token:
        season, episode = int(token.group(1)), int(token.group(2))
        from_file = clean_name(stem[: token.start()])
    elif folder_season is not None and (bare := _BARE_EPISODE.match(stem)):
        season, episode, from_file = folder_season, int(bare.group(1)), ""
    else:
        return None
    if folder_season is not None and len(parents) >= 2:
        show = clean_name(parents[-2])  # Show/Season 01/file
    elif from_file:
        show = from_file  # Show 1x03.mkv, show_s01e03_title.mp4
    elif parents and folder_season is None:
        show = clean_name(parents[-1])  # Show/S01E03.mkv
    else:
        show = ""
    return {"show": show, "season": season, "episode": episode}


def _movie_name(text: str, folder: bool) -> str | None:
    """'Movie Name (2004)' or 'Movie.Name.2004.1080p' → 'movie-name-2004'; None when there is no such year.

    A folder needs the year in brackets or followed by release words, so that 'Holiday 2004/' full of home videos
    is not taken for one movie; a file name only needs a year after some name.
    """
    text = _PART.sub("", text)
    latest = datetime.date.today().year + 1
    best = None
    for match in _YEAR.finditer(text):
        name, year, rest = clean_name(text[: match.start()]), int(match.group(1)), text[match.end() :]
        if not slug(name) or year > latest:  # "2001.A.Space.Odyssey", "Blade Runner 2049 (2017)"
            continue
        bracketed = match.group(0).startswith(("(", "["))
        release = bool(_RELEASE_WORD.match(rest.lstrip(" ._-[("))) or not rest.strip(" ._-")
        if folder and not (bracketed or (release and rest.strip(" ._-"))):
            continue
        best = f"{slug(name)}-{year}"
    return best


def parse_title(path: Path, root: Path | None = None) -> dict:
    """{"title_id", "show_id", "season", "episode"} guessed from the folders and name of `path` (None = unknown).

    Recognised, in this order: TV episodes (`Show/Season 01/Show - S01E03.mkv`, `Show/S01/Show.S01E03.720p.mkv`,
    `Show/Show 1x03.mkv`, `show_s01e03_title.mp4`, `Show/Season 2/03 - Name.mkv`) → `show-name/s01e03`;
    movies (`Movie Name (2004)/CD1.avi`, `Movie.Name.2004.1080p.BluRay.mkv`) → `movie-name-2004`; anything
    else is its own title, the slug of its path below `root` without the suffix (`a/clip`, `b/clip` differ).
    """
    path = Path(path)
    rel = _relative(path, root)
    out: dict = dict.fromkeys(TITLE_KEYS)
    episode = _episode(path)
    if episode is not None:
        out["season"], out["episode"] = episode["season"], episode["episode"]
        show_id = slug(episode["show"])
        if show_id:
            out["show_id"] = show_id
            out["title_id"] = f"{show_id}/s{episode['season']:02d}e{episode['episode']:02d}"
            return out
    elif path.parent.name and (season := _season_of(path.parent.name)) is not None:
        # A season folder with files we cannot number: keep the show and season, the file is its own title.
        out["season"] = season
        if len(path.parent.parts) >= 2:
            out["show_id"] = slug(clean_name(path.parent.parent.name)) or None
    else:
        movie = (path.parent.name and _movie_name(path.parent.name, folder=True)) or _movie_name(path.stem, False)
        if movie:
            out["title_id"] = movie
            return out
    parts = [slug(part) for part in rel.with_suffix("").parts if part not in ("/", "\\")]
    out["title_id"] = "/".join(p for p in parts if p) or slug(path.name) or "untitled"
    return out


# ------------------------------------------------------------------------------------------- the CSV override


class TitleTable:
    """Title fields per file from a user's CSV; `lookup` gives the non-empty cells of a file's row, or None."""

    def __init__(self, source: Path, rows: dict[str, dict]):
        self.source = source
        self.rows = rows  # resolved path → {column: value} (only non-empty cells)

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, path: Path) -> dict | None:
        row = self.rows.get(str(Path(path).resolve()))
        return dict(row) if row is not None else None


def load_titles_csv(csv_path: Path) -> TitleTable:
    """Read `path,title_id,show_id,season,episode` (any subset after `path`, other columns ignored).

    `path` is absolute or relative to the CSV's folder. Problems raise UsageError naming the file and line.
    """
    csv_path = Path(csv_path)
    fix = "the first line must name the columns, e.g. path,title_id,show_id,season,episode"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            records = list(_read_rows(csv_path, fh, fix))
    except FileNotFoundError:
        raise UsageError(f"{csv_path}: no such titles CSV; pass --titles the path of an existing file") from None
    except IsADirectoryError:
        raise UsageError(f"{csv_path}: is a folder; pass --titles a CSV file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{csv_path}: not UTF-8 text ({exc.reason}); save the titles CSV as UTF-8") from None

    rows: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    for line, raw_path, values in records:
        target = Path(raw_path).expanduser()
        key = str((target if target.is_absolute() else csv_path.parent / target).resolve())
        if key in rows and rows[key] != values:
            raise UsageError(
                f"{csv_path}:{line}: {raw_path} is already listed on line {first_line[key]} with other values; "
                "keep one row per file"
            )
        rows[key] = values
        first_line.setdefault(key, line)
    return TitleTable(csv_path, rows)


def _read_rows(csv_path: Path, fh, fix: str):
    """(line number, path cell, {column: value}) per data row, with integers checked."""
    reader = csv.reader(fh)
    header = next(reader, None)
    columns = [name.strip().lower() for name in header or []]
    if "path" not in columns:
        found = ", ".join(repr(c) for c in columns if c) or "nothing"
        raise UsageError(f"{csv_path}: no 'path' column in the header (found {found}); {fix}")
    index = {name: columns.index(name) for name in ("path", *TITLE_KEYS) if name in columns}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        cells = [cell.strip() for cell in cells] + [""] * (len(columns) - len(cells))
        raw_path = cells[index["path"]]
        if not raw_path:
            raise UsageError(f"{csv_path}:{line}: empty 'path' cell; give the file each row describes")
        values: dict = {}
        for name in TITLE_KEYS:
            if name not in index or not cells[index[name]]:
                continue
            value = cells[index[name]]
            if name in ("season", "episode"):
                try:
                    value = int(value)
                except ValueError:
                    raise UsageError(
                        f"{csv_path}:{line}: {name} {value!r} is not a whole number; write e.g. 3 or leave it empty"
                    ) from None
            values[name] = value
        yield line, raw_path, values


def resolve_title(path: Path, root: Path | None, table: TitleTable | None = None) -> dict:
    """`parse_title`, with the non-empty cells of the file's CSV row (if any) taking precedence."""
    out = parse_title(path, root)
    if table is not None:
        out.update(table.lookup(path) or {})
    return out
