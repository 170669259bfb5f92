"""A series as one job: chapters found in a folder (or given as several archives), one workspace per chapter,
one character bank for all of them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from manga_pipeline.series import SeriesError, find_chapters
from manga_pipeline.synthetic import generate_series, write_series
from manga_pipeline.workspace import Workspace
from tests.clihelp import invoke, read_pngs


def _png(path: Path):
    Image.new("L", (40, 60), 255).save(path)


def test_what_counts_as_a_series(tmp_path):
    series = tmp_path / "series"
    for name in ("ch10", "ch2", ".hidden"):
        (series / name).mkdir(parents=True)
        _png(series / name / "p1.png")
    (series / "ch3.cbz").write_bytes(b"")  # an archive is a chapter even before it is opened
    (series / "notes.txt").write_text("x")
    (series / "empty").mkdir()
    chapters, skipped = find_chapters([series])
    assert [(c.name, c.source.name) for c in chapters] == [("ch2", "ch2"), ("ch3", "ch3.cbz"), ("ch10", "ch10")]
    assert skipped == [f"{series / 'empty'}: folder holds no images"]
    # a folder with pages of its own is one chapter, whatever else it holds; so is one archive
    _png(series / "cover.png")
    assert find_chapters([series]) == (None, [])
    assert find_chapters([series / "ch3.cbz"]) == (None, [])
    # several paths are a series, one chapter each
    chapters, skipped = find_chapters([series / "ch10", series / "ch3.cbz", series / "cover.png"])
    assert [c.name for c in chapters] == ["ch3", "ch10"]
    assert skipped == [f"{series / 'cover.png'}: not a chapter (give chapter folders or ZIP/CBZ archives)"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "ch2.zip").write_bytes(b"")
    with pytest.raises(SeriesError, match="share the folder name 'ch2'"):
        find_chapters([series / "ch2", tmp_path / "other" / "ch2.zip"])


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    """Two chapters of two 300x420 pages with one cast (chapter 2 as a CBZ), and the cast's bank exported."""
    root = tmp_path_factory.mktemp("series")
    series = write_series(generate_series(2, 2, seed=3, size=(300, 420)), root, archives=(1,))
    invoke("init", root / "bankws")
    for ref in sorted((root / "references").glob("*.png")):
        invoke("character", "add", "-w", root / "bankws", ref.stem, "--reference", ref)
    invoke("character", "export", "-w", root / "bankws", root / "bank.zip")
    return root, series


def _identities(ws: Path) -> list[list[tuple]]:
    """Per page in reading order: (box, name) of every character, as `export --json` lists them."""
    listing = json.loads(invoke("export", "-w", ws, "--out", ws.parent / "listing", "--json").stdout)["pages"]
    return [sorted((tuple(c["box"]), c["identity"]) for c in p["characters"]) for p in listing]


def test_series_run_shares_one_bank_and_matches_single_chapter_runs(tmp_path, series_dir):
    root, series = series_dir
    r = invoke("run", series, "--out", tmp_path / "out", "--bank", root / "bank.zip", "--json")
    report = json.loads(r.stdout)
    assert [c["chapter"] for c in report["chapters"]] == ["ch01", "ch02"]
    assert report["pages"] == 4 and report["done"] == 4 and report["failed"] == 0
    out = tmp_path / "out"
    names = sorted(p.stem for p in (root / "references").glob("*.png"))
    # the series bank holds the cast, and every chapter's bank is that bank
    with Workspace.open(out / "bank") as bank:
        series_fp = {e.name: e.fingerprint for e in bank.bank()}
    assert sorted(series_fp) == names
    named = set()
    for ch in ("ch01", "ch02"):
        ws = out / "chapters" / ch / "workspace"
        with Workspace.open(ws) as w:
            assert {e.name: e.fingerprint for e in w.bank()} == series_fp
        # a chapter run on its own with the same bank names the same characters and colours the same pixels
        source = series / ch if ch == "ch01" else series / "ch02.cbz"
        single = tmp_path / f"single-{ch}"
        invoke("run", source, "--out", single, "--bank", root / "bank.zip")
        assert _identities(ws) == _identities(single / "workspace")
        got, want = read_pngs(out / "chapters" / ch / "pages"), read_pngs(single / "pages")
        assert len(got) == len(want) == 2
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
        named |= {name for page in _identities(ws) for _, name in page if name}
    assert named, "no character was named in any chapter: the bank did not reach the chapters"


def test_series_bank_is_the_truth_and_the_rerun_redoes_nothing(tmp_path, series_dir):
    root, series = series_dir
    out = tmp_path / "out"
    r = invoke("run", series, "--out", out, ok=False)
    assert r.exit_code == 0 and "series bank" in r.stderr and "is empty" in r.stderr
    invoke("character", "import", "-w", out / "bank", root / "bank.zip")
    extra = sorted((root / "references").glob("*.png"))[0]
    ch1 = out / "chapters" / "ch01" / "workspace"
    invoke("character", "add", "-w", ch1, "Stray", "--reference", extra)  # edited in one chapter only
    report = json.loads(invoke("run", series, "--out", out, "--json").stdout)
    assert report["done"] == 4 and report["bank"]["ch01"]["removed"] == ["Stray"]
    with Workspace.open(ch1) as w:
        assert "Stray" not in {e.name for e in w.bank()}
    again = json.loads(invoke("run", series, "--out", out, "--json").stdout)
    assert again["done"] == 4 and again["cached"] == 4
    assert all(not (c["added"] or c["replaced"] or c["removed"]) for c in again["bank"].values())


def test_series_errors_are_one_line(tmp_path, series_dir):
    root, series = series_dir
    r = invoke("run", series, ok=False)
    assert r.exit_code == 2 and "--out" in r.output
    r = invoke("run", series, "--out", tmp_path / "o", "--bank", tmp_path / "missing.zip", ok=False)
    assert r.exit_code == 1 and "missing.zip: no such file" in r.output
    assert not (tmp_path / "o" / "chapters").exists()
