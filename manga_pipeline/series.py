"""A series: several chapters coloured as one job, one workspace per chapter, one character bank for all.

Layout of a series output folder ``OUT``::

    OUT/bank/                       the series character bank (a workspace that holds only characters):
                                    `manga-color character add|import|list -w OUT/bank ...`
    OUT/chapters/<name>/workspace/  the chapter's own workspace (status, review, overrides, export work on it)
    OUT/chapters/<name>/pages/      its coloured pages

Before a chapter runs its bank is made equal to the series bank (``bank_archive.sync_bank``), so every chapter
names characters against the same references and a character gets the same colours in every chapter. Edit the
series bank, not a chapter's: the next series run puts each chapter's bank back in line with it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .imageio import ARCHIVE_SUFFIXES, IMAGE_SUFFIXES, _natural_key

BANK_DIR = "bank"
CHAPTERS_DIR = "chapters"


class SeriesError(ValueError):
    """The inputs cannot be read as a series; the message is one line that says why."""


@dataclass(frozen=True)
class ChapterInput:
    """One chapter of a series: ``source`` is a folder of pages or a ZIP/CBZ; ``name`` names its folder in OUT."""

    name: str
    source: Path

    def workspace(self, out: Path) -> Path:
        return Path(out) / CHAPTERS_DIR / self.name / "workspace"

    def pages_dir(self, out: Path) -> Path:
        return Path(out) / CHAPTERS_DIR / self.name / "pages"


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name != "__MACOSX"


def _holds_pages(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + ARCHIVE_SUFFIXES
               and all(_visible(Path(part)) for part in p.relative_to(folder).parts)
               for p in folder.rglob("*"))


def _chapter_name(path: Path) -> str:
    raw = path.stem if path.is_file() else path.name
    name = re.sub(r"[^A-Za-z0-9._ -]+", "_", raw).strip(" .") or "chapter"
    return name[:100]


def find_chapters(paths) -> tuple[list[ChapterInput] | None, list[str]]:
    """Read the inputs of `manga-color run` as a series, or say they are one chapter.

    Returns (chapters in natural order, one line per input left out), or (None, []) when ``paths`` is a single
    chapter: one archive, or one folder with images at its top level. A series is several paths (each a chapter
    folder or archive), or one folder whose top level holds no images, only chapter folders and/or archives.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise SeriesError("no chapter given")
    if len(paths) == 1:
        top = paths[0]
        if not top.is_dir():
            return None, []
        entries = [p for p in top.iterdir() if _visible(p)]
        if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
            return None, []
        candidates = [p for p in entries if p.is_dir() or p.suffix.lower() in ARCHIVE_SUFFIXES]
        if not candidates:
            return None, []  # nothing to colour: the chapter path reports "folder holds no images"
    else:
        candidates = paths
    chapters, skipped = [], []
    for p in candidates:
        if not p.exists():
            skipped.append(f"{p}: no such file or folder")
        elif p.is_dir():
            if _holds_pages(p):
                chapters.append(ChapterInput(_chapter_name(p), p))
            else:
                skipped.append(f"{p}: folder holds no images")
        elif p.suffix.lower() in ARCHIVE_SUFFIXES:
            chapters.append(ChapterInput(_chapter_name(p), p))
        else:
            skipped.append(f"{p}: not a chapter (give chapter folders or ZIP/CBZ archives)")
    seen: dict[str, Path] = {}
    for c in chapters:
        if c.name in seen:
            raise SeriesError(f"two chapters would share the folder name {c.name!r}: {seen[c.name]} and {c.source}; "
                              "rename one")
        seen[c.name] = c.source
    chapters.sort(key=lambda c: _natural_key(c.name))
    return chapters, skipped
