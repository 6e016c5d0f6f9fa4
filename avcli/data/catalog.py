"""The catalog: what `avcli ingest` writes and every other verb reads (DESIGN.md → Data flow).

One SQLite database per catalog directory (`catalog.sqlite`), one row per source file. Rows are written in
transactions (WAL journal), so an ingest killed at any moment leaves only whole rows behind and a re-run
continues where it stopped. Columns cover what later stages need (titles, labels, splits, shots, transcoded
copies); `meta` holds the schema version and ingest options.
"""

from __future__ import annotations

import gc
import hashlib
import json
import json.scanner
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from avcli.errors import UsageError

SCHEMA_VERSION = 2
DB_NAME = "catalog.sqlite"

COLUMNS = {
    "item_id": "TEXT PRIMARY KEY",  # stable: derived from the source path
    "path": "TEXT NOT NULL UNIQUE",  # absolute source path
    "size_bytes": "INTEGER",
    "mtime": "REAL",
    "content_hash": "TEXT",  # sha1 of size + first and last MiB: detects changed files cheaply
    "status": "TEXT NOT NULL",  # ok | rejected
    "reject_reason": "TEXT",
    "flags": "TEXT NOT NULL DEFAULT '[]'",  # JSON list, e.g. ["no_audio_stream", "silent_audio"]
    "title_id": "TEXT",
    "show_id": "TEXT",
    "season": "INTEGER",
    "episode": "INTEGER",
    "label": "TEXT",
    "split": "TEXT",
    "container": "TEXT",
    "start_s": "REAL",
    "duration_s": "REAL",
    "fps": "REAL",
    "width": "INTEGER",
    "height": "INTEGER",
    "rotation": "INTEGER",
    "video_stream": "INTEGER",
    "video_codec": "TEXT",
    "audio_stream": "INTEGER",
    "audio_codec": "TEXT",
    "audio_rate": "INTEGER",
    "audio_channels": "INTEGER",
    # the transcoded training copy, JSON: {path (relative to the catalog), video_stream, audio_stream, fps, width,
    # height, audio_rate, duration_s}; NULL when clips are read from the source itself (--no-transcode)
    "media": "TEXT",
    "shots": "TEXT NOT NULL DEFAULT '[]'",  # JSON list of shot boundary times (seconds)
    "extra": "TEXT NOT NULL DEFAULT '{}'",  # JSON object for dataset-specific fields (e.g. synthetic: faulty)
}


@dataclass(slots=True)  # no per-item __dict__: a million items are a million of these (issue 26)
class CatalogItem:
    """One usable item as readers see it: when a transcoded copy exists, the stream indices, timing and size
    are those of the copy (which is upright and starts at 0), and `source` is the copy."""

    item_id: str
    path: str
    status: str
    media_path: str | None = None
    duration_s: float | None = None
    start_s: float = 0.0
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    video_stream: int | None = None
    audio_stream: int | None = None
    audio_rate: int | None = None
    title_id: str | None = None
    label: str | None = None
    split: str | None = None
    reject_reason: str | None = None
    flags: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    show_id: str | None = None
    season: int | None = None
    episode: int | None = None
    shots: list = field(default_factory=list)
    audio_sidecar: str | None = None  # the copy's samples as WAV (media/pcm_sidecar.py), when ingest wrote one

    @property
    def source(self) -> str:
        """The file to decode clips from."""
        return self.media_path or self.path


def item_id_for(path: str | Path) -> str:
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


def content_hash(path: str | Path, size: int, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(chunk))
        if size > 2 * chunk:
            fh.seek(-chunk, 2)
            digest.update(fh.read(chunk))
    return digest.hexdigest()


def _process_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner json.loads runs, without its wrapping


def _decode(text: str):
    """`json.loads(text)`, a third faster for the compact JSON catalog columns hold: the scanner alone when it
    consumes the whole text; anything else (surrounding whitespace, errors) goes through json.loads itself."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _json_or(text: str | None, empty: str, make):
    """A JSON column's value; NULL and the column's empty value give a fresh empty one without the decoder."""
    return make() if not text or text == empty else _decode(text)


class _Joiner:
    """`str(root / relative)` for the relative paths of a catalog's copies, with pathlib run once per folder
    (media/ab/…): the same string, a few times faster over a million rows."""

    def __init__(self, root: Path):
        self.root, self.folders = root, {}

    def __call__(self, relative: str) -> str:
        folder, _, name = relative.rpartition("/")
        base = self.folders.get(folder)
        if base is None:
            base = self.folders[folder] = str(self.root / folder) if folder else None
        if base is None or name in ("", ".") or base == "." or base.endswith("/"):
            return str(self.root / relative)  # where pathlib would drop or merge parts: let it
        return f"{base}/{name}"


class Catalog:
    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root)
        db = self.root / DB_NAME
        if not db.exists():
            if not create:
                raise UsageError(f"{self.root}: not a catalog (no {DB_NAME}); create one with `avcli ingest`")
            self._create_atomically(db)
        self.db = self._connect(db)
        if create:
            self._create_schema()
        self._check_version()
        self._add_missing_columns()

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(db), timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _create_atomically(self, db: Path) -> None:
        """A new catalog appears under its name only with its schema in it: it is built beside the final path
        and renamed, so a process killed while creating it leaves no schema-less `catalog.sqlite` for readers
        to trip over (the next ingest simply starts again)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(f"{db.name}.creating-*"):  # left by creators killed earlier
            if not _process_alive(leftover.name.split(".creating-", 1)[1].split("-", 1)[0]):
                leftover.unlink(missing_ok=True)
        tmp = db.with_name(f"{db.name}.creating-{os.getpid()}")
        conn = self._connect(tmp)
        try:
            self.db = conn
            self._create_schema()
        finally:
            conn.close()  # checkpoints the WAL into the file, so the link below carries everything
        try:
            os.link(tmp, db)  # unlike a rename, never replaces a catalog another process created meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def _create_schema(self) -> None:
        with self.db:
            cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
            self.db.execute(f"CREATE TABLE IF NOT EXISTS items ({cols})")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _check_version(self) -> None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.root / DB_NAME}: not a readable catalog ({exc})") from None
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise UsageError(f"{self.root}: catalog schema {row and row[0]} is newer than this avcli; upgrade avcli")

    def _add_missing_columns(self) -> None:
        """Catalogs written by an older avcli gain the newer (nullable or defaulted) columns in place."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(items)")}
        missing = [name for name in COLUMNS if name not in have]
        if missing and have:
            with self.db:
                for name in missing:
                    self.db.execute(f"ALTER TABLE items ADD COLUMN {name} {COLUMNS[name].replace(' UNIQUE', '')}")
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    # ------------------------------------------------------------------------------------------ writing

    def upsert(self, rows: list[dict]) -> None:
        """Insert or replace whole rows in one transaction (a row is never half-written)."""
        if not rows:
            return
        with self.db:
            for row in rows:
                row = dict(row)
                for key in ("flags", "shots", "extra", "media"):
                    if key in row and row[key] is not None and not isinstance(row[key], str):
                        row[key] = json.dumps(row[key])
                unknown = set(row) - set(COLUMNS)
                if unknown:
                    raise ValueError(f"unknown catalog columns: {sorted(unknown)}")
                names = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                self.db.execute(f"INSERT OR REPLACE INTO items ({names}) VALUES ({marks})", list(row.values()))

    def set_meta(self, key: str, value) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # ------------------------------------------------------------------------------------------ reading

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def items(self, status: str | None = "ok") -> list[CatalogItem]:
        """The items with `status` (None: all), ordered by path.

        Built to load a million rows in seconds at about a kilobyte each (benchmarks/catalog_scale.py): the
        cyclic garbage collector is held off while the rows are built (they hold no reference cycles, and a
        million new containers would otherwise set off collections that walk everything loaded so far),
        strings that repeat across rows (status, titles, shows, labels, splits) are shared, the usual empty
        JSON values skip the decoder, and a copy's absolute path is joined with pathlib once per folder."""
        # every column a CatalogItem has, in the order unpacked below (the copy's paths come from `media`)
        query = ("SELECT item_id, path, status, duration_s, start_s, fps, width, height, rotation, video_stream, "
                 "audio_stream, audio_rate, title_id, label, split, reject_reason, flags, extra, show_id, season, "
                 "episode, shots, media FROM items")
        args: tuple = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        query += " ORDER BY path"
        share = {}.setdefault  # one str object per distinct value
        under_root = _Joiner(self.root)
        out = []
        collecting = gc.isenabled()
        gc.disable()
        try:
            for (item_id, path, item_status, duration_s, start_s, fps, width, height, rotation, video_stream,
                 audio_stream, audio_rate, title_id, label, split, reject_reason, flags, extra, show_id, season,
                 episode, shots, media) in self.db.execute(query, args):
                media_path = audio_sidecar = None
                start_s, rotation = start_s or 0.0, rotation or 0
                copy = _decode(media) if media else None
                if copy:  # read the copy: its own streams and timing, already upright, starting at 0
                    video_stream, audio_stream, fps, width, height, audio_rate, duration_s = (
                        copy.get("video_stream"), copy.get("audio_stream"), copy.get("fps"), copy.get("width"),
                        copy.get("height"), copy.get("audio_rate"), copy.get("duration_s"))
                    media_path, start_s, rotation = under_root(copy["path"]), 0.0, 0
                    if copy.get("audio_sidecar"):
                        audio_sidecar = under_root(copy["audio_sidecar"])
                out.append(CatalogItem(
                    item_id, path, share(item_status, item_status), media_path, duration_s, start_s, fps, width,
                    height, rotation, video_stream, audio_stream, audio_rate, share(title_id, title_id),
                    share(label, label), share(split, split), reject_reason, _json_or(flags, "[]", list),
                    _json_or(extra, "{}", dict), share(show_id, show_id), season, episode,
                    _json_or(shots, "[]", list), audio_sidecar))
        finally:
            if collecting:
                gc.enable()
        return out

    def rows(self) -> list[dict]:
        """Every row as stored (JSON columns decoded), ordered by path: for merging and comparing catalogs."""
        cursor = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM items ORDER BY path")
        out = []
        for values in cursor:
            row = dict(zip(COLUMNS, values))
            for key in ("flags", "shots", "extra", "media"):
                if row[key] is not None:
                    row[key] = json.loads(row[key])
            out.append(row)
        return out

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
