"""A portable character bank: one ZIP file a team passes around (``manga-color character export/import``).

Layout of the archive (format ``manga-color-bank``, version 1)::

    bank.json                      {"format", "version", "created_at", "characters": [...]} (below)
    images/<sha256><ext>           every reference image and B/W sample, byte for byte as registered
    descriptors/<k>.npy            float32 (n, D) identity descriptors of character k (no pickles)

Each character in ``bank.json``: ``name``, ``features`` (the reference features exactly as the bank stores
them), ``descriptors`` ({"file", "shape", "sha256"}), ``images`` ([{"kind", "file", "sha256", "source"}]) and
``fingerprint`` (``BankEntry.fingerprint``). Importing checks everything before it writes anything: the format
and version, every name, every file's sha256, that every image decodes, that the features parse and agree with
the images and descriptors, and that the fingerprint recomputed from what was read matches, so an imported
character gives exactly the cache keys (and colours) it gave where it was exported.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .fsutil import atomic_path, sha256_bytes
from .imageio import MAX_FILE_BYTES, ImageError, decode_image
from .records import RecordError, check_name
from .workspace import BankEntry, Workspace, WorkspaceError

FORMAT = "manga-color-bank"
VERSION = 1
MAX_ARCHIVE_BYTES = 2 * 1024**3  # uncompressed; a bank of a few hundred characters is far below
MAX_CHARACTERS = 10_000


class BankArchiveError(ValueError):
    """A bank archive cannot be written or read; the message is one line that says why."""


@dataclass(frozen=True)
class ArchivedCharacter:
    """One character read from an archive and checked: what ``Workspace.add_character`` stores."""

    name: str
    features: dict
    descriptors: np.ndarray  # float32 (n, D)
    images: tuple[tuple[str, bytes, str], ...]  # (kind, bytes, source name)
    fingerprint: str


@dataclass(frozen=True)
class BankChanges:
    """What an import (or a series-bank sync) did to a workspace's bank, by character name."""

    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)

    def to_json(self) -> dict:
        return {"added": list(self.added), "replaced": list(self.replaced), "removed": list(self.removed),
                "unchanged": list(self.unchanged)}


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def export_bank(ws: Workspace, path: Path, names=None) -> list[str]:
    """Write the bank of ``ws`` (or only ``names``) to the archive ``path`` atomically; returns the names written."""
    bank = {e.name: e for e in ws.bank()}
    if not bank:
        raise BankArchiveError(f"{ws.root}: the character bank is empty; nothing to export")
    names = list(names) if names else sorted(bank)
    unknown = [n for n in names if n not in bank]
    if unknown:
        raise BankArchiveError(f"no character named {', '.join(map(repr, unknown))} in {ws.root} "
                               f"(bank: {', '.join(sorted(bank))})")
    chars, files = [], {}
    for k, name in enumerate(names):
        entry = bank[name]
        images = []
        for kind, data, source in ws.character_image_bytes(name):
            sha = sha256_bytes(data)
            suffix = PurePosixPath(source.replace("\\", "/").split("!")[-1]).suffix.lower() or ".img"
            rel = f"images/{sha}{suffix}"
            files[rel] = data
            images.append({"kind": kind, "file": rel, "sha256": sha, "source": source})
        desc = _npy(entry.descriptors)
        files[f"descriptors/{k}.npy"] = desc
        chars.append({
            "name": name, "features": entry.features, "images": images, "fingerprint": entry.fingerprint,
            "descriptors": {"file": f"descriptors/{k}.npy", "shape": list(entry.descriptors.shape),
                            "sha256": sha256_bytes(desc)},
        })
    doc = {"format": FORMAT, "version": VERSION,
           "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "characters": chars}
    with atomic_path(Path(path)) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("bank.json", json.dumps(doc, indent=1))
            for rel, data in sorted(files.items()):
                # images are already compressed: storing them saves time and nothing else
                zf.writestr(rel, data, zipfile.ZIP_STORED if rel.startswith("images/") else zipfile.ZIP_DEFLATED)
    return names


def read_bank(path: Path) -> list[ArchivedCharacter]:
    """Read and check every character of the archive ``path``; raises BankArchiveError naming the first fault."""
    path = Path(path)
    if not path.is_file():
        raise BankArchiveError(f"{path}: no such file")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BankArchiveError(f"{path}: not a character bank archive (not a readable ZIP: {exc})") from None
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        if sum(i.file_size for i in infos.values()) > MAX_ARCHIVE_BYTES:
            raise BankArchiveError(f"{path}: archive unpacks to more than {MAX_ARCHIVE_BYTES // 2**30} GiB; refused")

        def member(rel: str, what: str) -> bytes:
            if rel not in infos:
                raise BankArchiveError(f"{path}: {what}: {rel} is missing from the archive")
            if infos[rel].file_size > MAX_FILE_BYTES:
                raise BankArchiveError(f"{path}: {what}: {rel} is over the {MAX_FILE_BYTES // 2**20} MB limit")
            try:
                return zf.read(rel)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise BankArchiveError(f"{path}: {what}: {rel} is damaged ({exc})") from None

        try:
            doc = json.loads(member("bank.json", "index"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BankArchiveError(f"{path}: bank.json is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BankArchiveError(f"{path}: not a manga-color character bank (bank.json lacks format {FORMAT!r})")
        if doc.get("version") != VERSION:
            raise BankArchiveError(f"{path}: bank format version {doc.get('version')!r} is not supported by this "
                                   f"manga-color (reads version {VERSION}); upgrade manga-color")
        chars = doc.get("characters")
        if not isinstance(chars, list) or not chars:
            raise BankArchiveError(f"{path}: the archive holds no characters")
        if len(chars) > MAX_CHARACTERS:
            raise BankArchiveError(f"{path}: {len(chars)} characters is more than the {MAX_CHARACTERS} limit")
        out, seen = [], set()
        for k, c in enumerate(chars):
            out.append(_read_character(path, k, c, member))
            if out[-1].name in seen:
                raise BankArchiveError(f"{path}: character {out[-1].name!r} appears twice")
            seen.add(out[-1].name)
    return out


def _read_character(path: Path, k: int, c, member) -> ArchivedCharacter:
    from colorizer.reference import ReferenceFeatures

    if not isinstance(c, dict):
        raise BankArchiveError(f"{path}: character #{k} is not a record")
    try:
        name = check_name(c.get("name"))
    except RecordError as exc:
        raise BankArchiveError(f"{path}: character #{k}: {exc}") from None
    what = f"character {name!r}"
    try:
        features, images_doc, desc_doc = c["features"], c["images"], c["descriptors"]
        fingerprint = str(c["fingerprint"])
        if not isinstance(features, dict) or not isinstance(images_doc, list) or not isinstance(desc_doc, dict):
            raise TypeError("features, images or descriptors has the wrong type")
        refs_json = features.get("references", [])
        palette = features.get("palette", [])
        if not isinstance(refs_json, list) or not isinstance(palette, list):
            raise TypeError("features.references and features.palette must be lists")
    except (KeyError, TypeError, AttributeError) as exc:
        raise BankArchiveError(f"{path}: {what}: malformed record ({exc})") from None

    images = []
    for im in images_doc:
        if not isinstance(im, dict) or im.get("kind") not in ("reference", "sample") or not isinstance(
                im.get("file"), str) or not isinstance(im.get("source", ""), str):
            raise BankArchiveError(f"{path}: {what}: an image record is malformed")
        data = member(im["file"], what)
        if sha256_bytes(data) != im.get("sha256"):
            raise BankArchiveError(f"{path}: {what}: {im['file']} does not match its sha256 (damaged or edited)")
        try:
            decode_image(data, im["file"])
        except ImageError as exc:
            raise BankArchiveError(f"{path}: {what}: {exc}") from None
        images.append((im["kind"], data, im.get("source") or im["file"]))
    if not images:
        raise BankArchiveError(f"{path}: {what}: no images (a character needs a reference or a sample)")
    n_refs = sum(kind == "reference" for kind, _, _ in images)
    if len(refs_json) != n_refs:
        raise BankArchiveError(f"{path}: {what}: {len(refs_json)} reference feature record(s) for {n_refs} "
                               "reference image(s)")
    for r in refs_json:
        try:
            ReferenceFeatures.from_json(r)
        except (ValueError, TypeError) as exc:
            raise BankArchiveError(f"{path}: {what}: bad reference features ({exc})") from None

    raw = member(str(desc_doc.get("file")), what)
    if sha256_bytes(raw) != desc_doc.get("sha256"):
        raise BankArchiveError(f"{path}: {what}: descriptors do not match their sha256 (damaged or edited)")
    try:
        desc = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise BankArchiveError(f"{path}: {what}: descriptors are not a .npy array ({exc})") from None
    if desc.dtype != np.float32 or desc.ndim != 2 or list(desc.shape) != desc_doc.get("shape"):
        raise BankArchiveError(f"{path}: {what}: descriptors are {desc.dtype} {list(desc.shape)}, expected float32 "
                               f"{desc_doc.get('shape')}")
    if not np.isfinite(desc).all():
        raise BankArchiveError(f"{path}: {what}: descriptors hold NaN or infinite values")
    views = (features.get("identity") or {}).get("views")
    if views is not None and views != len(desc):
        raise BankArchiveError(f"{path}: {what}: features say {views} identity views, descriptors hold {len(desc)}")
    got = BankEntry(name, features, desc, ()).fingerprint
    if got != fingerprint:
        raise BankArchiveError(f"{path}: {what}: fingerprint mismatch (the record was edited by hand?)")
    return ArchivedCharacter(name, features, desc, tuple(images), fingerprint)


def import_bank(ws: Workspace, path: Path, *, replace: bool = False) -> BankChanges:
    """Add every character of the archive to ``ws``. An identical character is left as it is; a different one of
    the same name is an error unless ``replace``. Nothing is written unless the whole archive checks out."""
    chars = read_bank(path)
    current = {e.name: e.fingerprint for e in ws.bank()}
    clashes = [c.name for c in chars if c.name in current and current[c.name] != c.fingerprint]
    if clashes and not replace:
        raise BankArchiveError(
            f"{ws.root} already has a different {', '.join(map(repr, clashes))}; remove it first or import with "
            "--replace")
    added, replaced, unchanged = [], [], []
    for c in chars:
        if current.get(c.name) == c.fingerprint:
            unchanged.append(c.name)
            continue
        try:
            ws.add_character(c.name, c.features, c.descriptors, list(c.images), replace=True)
        except WorkspaceError as exc:
            raise BankArchiveError(str(exc)) from None
        (replaced if c.name in current else added).append(c.name)
    return BankChanges(tuple(added), tuple(replaced), (), tuple(unchanged))


def sync_bank(source: Workspace, target: Workspace) -> BankChanges:
    """Make ``target``'s bank equal to ``source``'s (a series bank into one chapter): characters that differ are
    copied, characters ``source`` lacks are removed."""
    want = {e.name: e for e in source.bank()}
    have = {e.name: e.fingerprint for e in target.bank()}
    added, replaced, removed, unchanged = [], [], [], []
    for name, entry in want.items():
        if have.get(name) == entry.fingerprint:
            unchanged.append(name)
            continue
        target.add_character(name, entry.features, entry.descriptors, source.character_image_bytes(name),
                             replace=True)
        (replaced if name in have else added).append(name)
    for name in sorted(set(have) - set(want)):
        target.remove_character(name)
        removed.append(name)
    return BankChanges(tuple(added), tuple(replaced), tuple(removed), tuple(unchanged))
