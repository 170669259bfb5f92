"""The chapter workspace: a folder with a SQLite database and the files the pipeline produced.

Layout::

    WS/workspace.sqlite          pages, detections, identities, character bank, overrides, results, runs
    WS/originals/<sha256>.<ext>  byte-exact copies of the added pages (the user's files are never touched)
    WS/bank/<sha256>.<ext>       character reference images and B/W samples
    WS/cache/panels/<key>.npz    per-panel chroma from the colorizer, addressed by its cache key
    WS/output/<nnnn>_<id>.png    composed colour pages

Every file is written to a temporary name and renamed into place; database rows that point at a file are
written after the file, in one transaction, so a run killed at any instant leaves either the old state or the
new, never half of one. Every cached result carries the key of everything that made it (page bytes, settings,
weights, overrides), so a re-run redoes exactly what changed.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon

from .fsutil import atomic_path, atomic_write_bytes, sha256_bytes
from .records import (
    CharacterInstance,
    ColorHint,
    IdentityOverride,
    Page,
    PageDetections,
    PageOverrides,
    Panel,
    TextRegion,
    check_name,
)

DB_NAME = "workspace.sqlite"
SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE pages (
        page_id TEXT PRIMARY KEY, position INTEGER NOT NULL, name TEXT NOT NULL, stored TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, is_color INTEGER NOT NULL, added_at TEXT NOT NULL);
    CREATE TABLE detections (
        page_id TEXT PRIMARY KEY REFERENCES pages(page_id) ON DELETE CASCADE,
        key TEXT NOT NULL, detector TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE identities (
        page_id TEXT PRIMARY KEY REFERENCES pages(page_id) ON DELETE CASCADE,
        key TEXT NOT NULL, identifier TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE characters (
        name TEXT PRIMARY KEY, created_at TEXT NOT NULL, features TEXT NOT NULL, descriptors BLOB NOT NULL);
    CREATE TABLE character_images (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL REFERENCES characters(name) ON DELETE CASCADE ON UPDATE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('reference', 'sample')), stored TEXT NOT NULL, sha256 TEXT NOT NULL,
        source TEXT NOT NULL, added_at TEXT NOT NULL);
    CREATE TABLE overrides (
        id INTEGER PRIMARY KEY, page_id TEXT NOT NULL REFERENCES pages(page_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('identity', 'hint', 'reference', 'lock')),
        payload TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE panel_results (
        page_id TEXT NOT NULL REFERENCES pages(page_id) ON DELETE CASCADE, panel INTEGER NOT NULL,
        key TEXT NOT NULL, file TEXT NOT NULL, weights TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (page_id, panel));
    CREATE TABLE page_results (
        page_id TEXT PRIMARY KEY REFERENCES pages(page_id) ON DELETE CASCADE,
        key TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('done', 'failed', 'skipped')),
        output TEXT, reason TEXT NOT NULL DEFAULT '', weights TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, settings TEXT NOT NULL,
        summary TEXT);
    """,
}


class WorkspaceError(RuntimeError):
    """The workspace is missing, damaged, or an operation on it is not allowed."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def cache_key(*parts) -> str:
    """A stable hash of JSON-able parts: the identity of a cached result."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --- (de)serialisation of records -------------------------------------------------------------------------


def _mask_to_json(mask):
    if mask is None:
        return None
    packed = np.packbits(mask.astype(np.uint8), axis=None)
    return {"shape": list(mask.shape), "bits": packed.tobytes().hex()}


def _mask_from_json(d):
    if d is None:
        return None
    shape = tuple(d["shape"])
    bits = np.frombuffer(bytes.fromhex(d["bits"]), dtype=np.uint8)
    return np.unpackbits(bits)[: shape[0] * shape[1]].reshape(shape).astype(bool)


def detections_to_json(det: PageDetections) -> dict:
    return {
        "page_id": det.page_id,
        "width": det.width,
        "height": det.height,
        "panels": [
            {"polygon": [list(map(float, xy)) for xy in p.polygon.exterior.coords], "order": p.order, "score": p.score}
            for p in det.panels
        ],
        "characters": [
            {"box": list(c.box), "score": c.score, "identity": c.identity, "confidence": c.confidence,
             "panel": c.panel, "identity_source": c.identity_source, "mask": _mask_to_json(c.mask)}
            for c in det.characters
        ],
        "texts": [
            {"box": list(t.box), "kind": t.kind, "score": t.score, "mask": _mask_to_json(t.mask)} for t in det.texts
        ],
    }


def detections_from_json(d: dict) -> PageDetections:
    return PageDetections(
        page_id=d["page_id"],
        width=d["width"],
        height=d["height"],
        panels=tuple(Panel(Polygon(p["polygon"]), p["order"], p["score"]) for p in d["panels"]),
        characters=tuple(
            CharacterInstance(
                box=tuple(c["box"]), score=c["score"], identity=c["identity"], confidence=c["confidence"],
                panel=c["panel"], identity_source=c["identity_source"], mask=_mask_from_json(c["mask"]),
            )
            for c in d["characters"]
        ),
        texts=tuple(
            TextRegion(box=tuple(t["box"]), kind=t["kind"], score=t["score"], mask=_mask_from_json(t["mask"]))
            for t in d["texts"]
        ),
    )


@dataclass(frozen=True)
class BankEntry:
    """A registered character: its reference features (JSON) and identity descriptors (float32 (n, D))."""

    name: str
    features: dict
    descriptors: np.ndarray
    images: tuple[tuple[str, Path], ...]  # (kind, stored path)

    @property
    def fingerprint(self) -> str:
        return cache_key(self.name, self.features, hashlib.sha256(self.descriptors.tobytes()).hexdigest())


class Workspace:
    """Open with ``Workspace.create(path)`` or ``Workspace.open(path)``; use as a context manager."""

    def __init__(self, root: Path, conn: sqlite3.Connection):
        self.root = root
        self._conn = conn

    # --- opening ------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, *, exist_ok: bool = False) -> "Workspace":
        root = Path(root)
        if (root / DB_NAME).exists():
            if not exist_ok:
                raise WorkspaceError(f"{root} already holds a workspace")
            return cls.open(root)
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        return cls._connect(root)

    @classmethod
    def open(cls, root: Path) -> "Workspace":
        root = Path(root)
        if not (root / DB_NAME).exists():
            raise WorkspaceError(f"{root} is not a workspace (no {DB_NAME}); create one with `manga-color init {root}`")
        return cls._connect(root)

    @classmethod
    def _connect(cls, root: Path) -> "Workspace":
        try:
            conn = sqlite3.connect(root / DB_NAME, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            ws = cls(root, conn)
            ws._migrate()
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"{root / DB_NAME}: damaged workspace database ({exc})") from None
        return ws

    def _migrate(self):
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"{self.root}: workspace schema v{version} is newer than this manga-color (v{SCHEMA_VERSION}); upgrade"
            )
        for v in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction() as c:
                for stmt in _MIGRATIONS[v].split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute(f"PRAGMA user_version={v}")
                c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(v),))

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def transaction(self):
        cur = _Tx(self._conn)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _q(self, sql, args=()):
        return self._conn.execute(sql, args).fetchall()

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # --- pages --------------------------------------------------------------------------------------------

    def add_page(self, data: bytes, name: str, width: int, height: int, is_color: bool) -> tuple[Page, bool]:
        """Store a page (by content hash). Returns (page, added); a page already present is not added twice."""
        page_id = sha256_bytes(data)
        rows = self._q("SELECT * FROM pages WHERE page_id=?", (page_id,))
        if rows:
            return self._page(rows[0]), False
        suffix = Path(name.split("!")[-1]).suffix.lower() or ".img"
        stored = Path("originals") / f"{page_id}{suffix}"
        atomic_write_bytes(self.root / stored, data)
        with self.transaction() as c:
            position = c.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM pages").fetchone()[0]
            c.execute(
                "INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (page_id, position, name, str(stored), width, height, int(is_color), _now()),
            )
        return self.page(page_id), True

    def _page(self, row) -> Page:
        return Page(
            page_id=row["page_id"], source=self.root / row["stored"], width=row["width"], height=row["height"],
            is_color=bool(row["is_color"]), position=row["position"],
        )

    def pages(self) -> list[Page]:
        return [self._page(r) for r in self._q("SELECT * FROM pages ORDER BY position")]

    def page(self, page_id: str) -> Page:
        rows = self._q("SELECT * FROM pages WHERE page_id=?", (page_id,))
        if not rows:
            raise WorkspaceError(f"no page {page_id[:12]} in this workspace")
        return self._page(rows[0])

    def page_name(self, page_id: str) -> str:
        rows = self._q("SELECT name FROM pages WHERE page_id=?", (page_id,))
        return rows[0]["name"] if rows else page_id[:12]

    def find_page(self, ref: str) -> Page:
        """A page by position (``3``), id prefix (``a1b2c3``) or original file name."""
        pages = self.pages()
        if ref.isdigit() and int(ref) < len(pages) and len(ref) < 6:
            return pages[int(ref)]
        hits = [p for p in pages if p.page_id.startswith(ref.lower())] if len(ref) >= 6 else []
        if not hits:
            hits = [p for p in pages if Path(self.page_name(p.page_id).split("!")[-1]).name == ref]
        if len(hits) != 1:
            raise WorkspaceError(f"page {ref!r} matches {len(hits)} pages; give its position or a longer id")
        return hits[0]

    # --- detections and identities --------------------------------------------------------------------------

    def cached_detections(self, page_id: str, key: str) -> PageDetections | None:
        rows = self._q("SELECT payload FROM detections WHERE page_id=? AND key=?", (page_id, key))
        return detections_from_json(json.loads(rows[0]["payload"])) if rows else None

    def save_detections(self, det: PageDetections, key: str, detector: str):
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO detections VALUES (?, ?, ?, ?, ?)",
                (det.page_id, key, detector, json.dumps(detections_to_json(det)), _now()),
            )

    def cached_identities(self, page_id: str, key: str) -> PageDetections | None:
        rows = self._q("SELECT payload FROM identities WHERE page_id=? AND key=?", (page_id, key))
        return detections_from_json(json.loads(rows[0]["payload"])) if rows else None

    def save_identities(self, det: PageDetections, key: str, identifier: str):
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO identities VALUES (?, ?, ?, ?, ?)",
                (det.page_id, key, identifier, json.dumps(detections_to_json(det)), _now()),
            )

    def latest_identities(self, page_id: str) -> PageDetections | None:
        """The most recent identified detections of a page, whatever settings made them (for export/review)."""
        rows = self._q("SELECT payload FROM identities WHERE page_id=?", (page_id,))
        return detections_from_json(json.loads(rows[0]["payload"])) if rows else None

    # --- character bank -----------------------------------------------------------------------------------

    def add_character(self, name: str, features: dict, descriptors: np.ndarray,
                      images: list[tuple[str, bytes, str]], *, replace: bool = False):
        """Register ``name``; ``images`` = [(kind, bytes, source name)], stored by content hash."""
        check_name(name)
        if self._q("SELECT 1 FROM characters WHERE name=?", (name,)) and not replace:
            raise WorkspaceError(f"character {name!r} is already registered; remove it first or use --replace")
        stored = []
        for kind, data, source in images:
            sha = sha256_bytes(data)
            rel = Path("bank") / f"{sha}{Path(source).suffix.lower() or '.img'}"
            if not (self.root / rel).exists():
                atomic_write_bytes(self.root / rel, data)
            stored.append((kind, str(rel), sha, source))
        desc = np.ascontiguousarray(descriptors, dtype=np.float32)
        blob = json.dumps({"shape": list(desc.shape)}).encode() + b"\n" + desc.tobytes()
        with self.transaction() as c:
            c.execute("DELETE FROM characters WHERE name=?", (name,))
            c.execute("INSERT INTO characters VALUES (?, ?, ?, ?)", (name, _now(), json.dumps(features), blob))
            for kind, rel, sha, source in stored:
                c.execute(
                    "INSERT INTO character_images (name, kind, stored, sha256, source, added_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, kind, rel, sha, source, _now()),
                )

    def remove_character(self, name: str):
        with self.transaction() as c:
            if c.execute("DELETE FROM characters WHERE name=?", (name,)).rowcount == 0:
                raise WorkspaceError(f"no character named {name!r}")

    def bank(self) -> list[BankEntry]:
        out = []
        for row in self._q("SELECT * FROM characters ORDER BY name"):
            head, raw = bytes(row["descriptors"]).split(b"\n", 1)
            shape = tuple(json.loads(head)["shape"])
            desc = np.frombuffer(raw, dtype=np.float32).reshape(shape).copy()
            imgs = tuple(
                (r["kind"], self.root / r["stored"])
                for r in self._q("SELECT kind, stored FROM character_images WHERE name=? ORDER BY id", (row["name"],))
            )
            out.append(BankEntry(row["name"], json.loads(row["features"]), desc, imgs))
        return out

    # --- overrides ----------------------------------------------------------------------------------------

    def add_override(self, item) -> int:
        """Store an IdentityOverride, ColorHint, ("reference", page_id, panel, name) or ("lock", page_id, panel)."""
        if isinstance(item, IdentityOverride):
            kind, page_id, payload = "identity", item.page_id, {"box": list(item.box), "name": item.name}
        elif isinstance(item, ColorHint):
            kind, page_id, payload = "hint", item.page_id, {"x": item.x, "y": item.y, "color": item.color}
        elif isinstance(item, tuple) and item and item[0] == "reference":
            _, page_id, panel, ref = item
            kind, payload = "reference", {"panel": int(panel), "reference": check_name(ref)}
        elif isinstance(item, tuple) and item and item[0] == "lock":
            _, page_id, panel = item
            kind, payload = "lock", {"panel": int(panel)}
        else:
            raise TypeError(f"not an override: {item!r}")
        self.page(page_id)
        with self.transaction() as c:
            return c.execute(
                "INSERT INTO overrides (page_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                (page_id, kind, json.dumps(payload), _now()),
            ).lastrowid

    def remove_override(self, override_id: int):
        with self.transaction() as c:
            if c.execute("DELETE FROM overrides WHERE id=?", (override_id,)).rowcount == 0:
                raise WorkspaceError(f"no override #{override_id}")

    def list_overrides(self, page_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM overrides ORDER BY id", ()
        if page_id:
            sql, args = "SELECT * FROM overrides WHERE page_id=? ORDER BY id", (page_id,)
        return [
            {"id": r["id"], "page_id": r["page_id"], "kind": r["kind"], **json.loads(r["payload"])}
            for r in self._q(sql, args)
        ]

    def overrides(self, page_id: str) -> PageOverrides:
        identities, hints, refs, locks = [], [], {}, set()
        for o in self.list_overrides(page_id):
            if o["kind"] == "identity":
                identities.append(IdentityOverride(page_id, tuple(o["box"]), o["name"]))
            elif o["kind"] == "hint":
                hints.append(ColorHint(page_id, o["x"], o["y"], o["color"]))
            elif o["kind"] == "reference":
                refs[o["panel"]] = o["reference"]  # the latest choice for a panel wins
            elif o["kind"] == "lock":
                locks.add(o["panel"])
        return PageOverrides(page_id, tuple(identities), tuple(hints), tuple(sorted(refs.items())), frozenset(locks))

    # --- results ------------------------------------------------------------------------------------------

    def panel_result(self, page_id: str, panel: int) -> tuple[str, np.ndarray, str] | None:
        """(key, chroma float32 (h, w, 2), weights) of a panel's stored chroma, or None."""
        rows = self._q("SELECT * FROM panel_results WHERE page_id=? AND panel=?", (page_id, panel))
        if not rows or not (self.root / rows[0]["file"]).exists():
            return None
        with np.load(self.root / rows[0]["file"]) as z:
            chroma = z["chroma"].astype(np.float32)
        return rows[0]["key"], chroma, rows[0]["weights"]

    def panel_keys(self, page_id: str) -> dict[int, str]:
        """{panel: key} of a page's stored panel chroma whose file is present (nothing is loaded)."""
        rows = self._q("SELECT panel, key, file FROM panel_results WHERE page_id=?", (page_id,))
        return {r["panel"]: r["key"] for r in rows if (self.root / r["file"]).exists()}

    def save_panel_result(self, page_id: str, panel: int, key: str, chroma: np.ndarray, weights: str):
        rel = Path("cache") / "panels" / f"{key}.npz"
        if not (self.root / rel).exists():
            with atomic_path(self.root / rel) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, chroma=chroma.astype(np.float16))
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO panel_results VALUES (?, ?, ?, ?, ?, ?)",
                (page_id, panel, key, str(rel), weights, _now()),
            )

    def page_result(self, page_id: str) -> dict | None:
        rows = self._q("SELECT * FROM page_results WHERE page_id=?", (page_id,))
        if not rows:
            return None
        r = dict(rows[0])
        if r["output"]:
            r["output"] = self.root / r["output"]
        return r

    def output_path(self, page: Page) -> Path:
        return self.root / "output" / f"{page.position:04d}_{page.short_id}.png"

    def save_page_result(self, page_id: str, key: str, status: str, output: Path | None = None,
                         reason: str = "", weights: str = ""):
        rel = str(Path(output).relative_to(self.root)) if output else None
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO page_results VALUES (?, ?, ?, ?, ?, ?, ?)",
                (page_id, key, status, rel, reason, weights, _now()),
            )

    # --- runs ---------------------------------------------------------------------------------------------

    def start_run(self, settings: dict) -> int:
        with self.transaction() as c:
            return c.execute(
                "INSERT INTO runs (started_at, settings) VALUES (?, ?)", (_now(), json.dumps(settings))
            ).lastrowid

    def finish_run(self, run_id: int, summary: dict):
        with self.transaction() as c:
            c.execute("UPDATE runs SET finished_at=?, summary=? WHERE id=?", (_now(), json.dumps(summary), run_id))

    def runs(self) -> list[dict]:
        return [dict(r) for r in self._q("SELECT * FROM runs ORDER BY id")]

    # --- identification: renaming, embedding cache, unknown clusters ----------------------------------------

    def rename_character(self, old: str, new: str):
        """Rename a bank character; its images and the overrides that name it follow."""
        check_name(new)
        with self.transaction() as c:
            if not c.execute("SELECT 1 FROM characters WHERE name=?", (old,)).fetchone():
                raise WorkspaceError(f"no character named {old!r}")
            if c.execute("SELECT 1 FROM characters WHERE name=?", (new,)).fetchone():
                raise WorkspaceError(f"character {new!r} is already registered; remove it first")
            c.execute("UPDATE characters SET name=? WHERE name=?", (new, old))  # images: ON UPDATE CASCADE
            rows = c.execute("SELECT id, kind, payload FROM overrides WHERE kind IN ('identity', 'reference')").fetchall()
            for row in rows:
                payload = json.loads(row["payload"])
                field_ = "name" if row["kind"] == "identity" else "reference"
                if payload.get(field_) == old:
                    payload[field_] = new
                    c.execute("UPDATE overrides SET payload=? WHERE id=?", (json.dumps(payload), row["id"]))

    def character_image_bytes(self, name: str) -> list[tuple[str, bytes, str]]:
        """[(kind, bytes, source name)] of a character's stored images, in the order they were added."""
        rows = self._q("SELECT kind, stored, source FROM character_images WHERE name=? ORDER BY id", (name,))
        return [(r["kind"], (self.root / r["stored"]).read_bytes(), r["source"]) for r in rows]

    def _embedding_path(self, key: str) -> Path:
        return self.root / "cache" / "embeddings" / f"{key}.npy"

    def cached_embeddings(self, key: str) -> np.ndarray | None:
        """float32 (n, D) character embeddings stored under ``key``, or None."""
        path = self._embedding_path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError):
            return None  # a damaged cache file is recomputed

    def save_embeddings(self, key: str, embeddings: np.ndarray):
        path = self._embedding_path(key)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(embeddings, dtype=np.float32), allow_pickle=False)

    def save_unknown_clusters(self, key: str, clusters: list[dict]):
        """The clusters of unknown characters found by the latest chapter identification (``key`` = its key)."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES ('identify.clusters', ?)",
                      (json.dumps({"key": key, "created_at": _now(), "clusters": clusters}),))

    def unknown_clusters(self) -> dict:
        """{"key", "created_at", "clusters": [{"cluster", "members": [{"page_id", "box"}]}]} (empty when none)."""
        rows = self._q("SELECT value FROM meta WHERE key='identify.clusters'")
        return json.loads(rows[0]["value"]) if rows else {"key": None, "created_at": None, "clusters": []}


class _Tx:
    """The cursor handed out by ``Workspace.transaction``."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, args=()):
        return self._conn.execute(sql, args)
