"""Synthetic series: several chapters that share one cast, laid out on disk as a user's series folder."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from .characters import make_cast
from .io import write_chapter
from .render import SyntheticChapter, generate_page


def generate_series(n_chapters: int = 2, pages: int = 3, *, seed: int = 0, size: tuple[int, int] = (1400, 2000),
                    cast_size: int = 3, layouts: "Path | None | str" = None) -> tuple[SyntheticChapter, ...]:
    """``n_chapters`` chapters of ``pages`` pages each with one recurring cast (deterministic for the arguments).

    Chapter k uses page seed ``seed * 1000 + k``; ``layouts`` as for ``generate_page`` (default: the built-in
    grammar, so the pages do not depend on ``../shared/data``).
    """
    if n_chapters < 1:
        raise ValueError(f"n_chapters must be >= 1, got {n_chapters}")
    cast = make_cast(cast_size, seed=seed)
    return tuple(
        SyntheticChapter(seed=seed * 1000 + k, cast=cast, pages=tuple(
            generate_page(i, seed=seed * 1000 + k, size=size, cast=cast, layouts=layouts) for i in range(pages)))
        for k in range(n_chapters)
    )


def write_series(series, folder: Path, *, archives: tuple[int, ...] = ()) -> Path:
    """Write ``series`` under ``folder`` and return ``folder/series``, the folder a user would colour.

    Layout: ``series/ch01/page_000.png`` ... (B/W pages; the chapters whose 0-based index is in ``archives`` as
    ``series/chNN.cbz`` instead), ``references/<Name>.png`` (the cast's colour references) and
    ``truth/chNN/`` (each chapter in the shared annotation format, see ``write_chapter``).
    """
    folder = Path(folder)
    for k, chapter in enumerate(series):
        name = f"ch{k + 1:02d}"
        truth = folder / "truth" / name
        write_chapter(chapter, truth)
        pages = sorted((truth / "pages").glob("*.png"))
        if k in archives:
            (folder / "series").mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(folder / "series" / f"{name}.cbz", "w") as zf:
                for p in pages:
                    zf.write(p, p.name)
        else:
            (folder / "series" / name).mkdir(parents=True, exist_ok=True)
            for p in pages:
                shutil.copyfile(p, folder / "series" / name / p.name)
    refs = folder / "truth" / "ch01" / "references"
    (folder / "references").mkdir(parents=True, exist_ok=True)
    for p in sorted(refs.glob("*.png")):
        shutil.copyfile(p, folder / "references" / p.name)
    return folder / "series"
