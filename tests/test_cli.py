"""The command line as a user drives it: CliRunner on tmp_path, synthetic chapters drawn in code."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from manga_pipeline.colorspace import gray_to_L, rgb_to_lab
from manga_pipeline.synthetic import generate_chapter, write_chapter
from tests.clihelp import invoke, read_rgb

SIZE = (600, 850)


@pytest.fixture(scope="module")
def chapter_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("chapter")
    write_chapter(generate_chapter(3, seed=7, size=SIZE), root)
    return root


def test_demo_writes_a_coloured_chapter(tmp_path):
    out = tmp_path / "demo"
    r = invoke("demo", "--out", out, "--pages", 2, "--size", "600x850")
    pages = sorted((out / "colored").glob("*.png"))
    assert len(pages) == 2
    truth = json.loads((out / "chapter" / "ground_truth.json").read_text())["pages"][0]
    bw = np.asarray(Image.open(out / "chapter" / truth["image"]).convert("L"))
    balloons = np.asarray(Image.open(out / "chapter" / truth["balloon_mask"])) > 0
    lab = rgb_to_lab(read_rgb(pages[0]))
    L0 = gray_to_L(bw)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    # ink (lines, screentone dots, lettering) keeps its lightness; paper only ever darkens, and boundedly
    assert np.abs(lab[..., 0] - L0)[L0 < 40].max() <= 1.0
    assert (lab[..., 0] - L0).max() <= 1.0 and (L0 - lab[..., 0]).max() <= 31.0
    # balloons stay paper-white
    assert np.percentile(chroma[balloons], 99) <= 2.0
    # the registered characters are visibly coloured, and the colour sits on them, not around them
    on_bodies = np.zeros(bw.shape, bool)
    for body in truth["bodies"]:
        x0, y0, x1, y1 = body["box"]
        on_bodies[y0:y1, x0:x1] = True
    coloured = chroma > 10
    assert coloured[on_bodies].mean() > 0.03
    assert coloured[on_bodies].mean() > 5 * coloured[~on_bodies].mean()
    # the weights that coloured it are named (and an untrained network would be flagged)
    assert "colorizer.synthetic-v1@" in r.output and "UNTRAINED" not in r.output
    with zipfile.ZipFile(out / "colored.cbz") as zf:
        assert sorted(zf.namelist()) == ["0001.png", "0002.png", "ComicInfo.xml"]
    assert "colorizer" in r.output


def _bad_inputs(folder: Path) -> list[Path]:
    folder.mkdir()
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    (folder / "notes.png").write_text("this is a text file, not a page\n")
    (folder / "empty.png").write_bytes(b"")
    return [folder / "corrupt.png", folder / "notes.png", folder / "empty.png", folder / "missing.png"]


def test_bad_inputs_get_one_line_each_and_the_rest_is_coloured(tmp_path, chapter_dir):
    ws = tmp_path / "ws"
    invoke("init", ws)
    bad = _bad_inputs(tmp_path / "bad")
    r = invoke("add", "-w", ws, chapter_dir / "pages", *bad, ok=False)
    assert r.exit_code == 3
    lines = [line for line in r.stderr.splitlines() if line.startswith("skipped")]
    assert len(lines) == 4
    assert any("empty" in line for line in lines) and any("not an image" in line for line in lines)
    assert any("no such file" in line for line in lines) and any("corrupt" in line for line in lines)
    r = invoke("run", "-w", ws, "--json")
    report = json.loads(r.stdout)
    assert report["done"] == 3 and report["failed"] == 0
    r = invoke("export", "-w", ws, "--out", tmp_path / "out.cbz")
    with zipfile.ZipFile(tmp_path / "out.cbz") as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 3
        assert "<Manga>YesAndRightToLeft</Manga>" in zf.read("ComicInfo.xml").decode()


def test_one_shot_chapter_run_reports_bad_pages_and_finishes(tmp_path, chapter_dir):
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted((chapter_dir / "pages").glob("*.png"))[:2]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "page_001b.png").write_text("oops")
    r = invoke("run", src, "--out", tmp_path / "o", "--json", ok=False)
    assert r.exit_code == 3
    report = json.loads(r.stdout)
    assert report["done"] == 2 and len(report["rejected_inputs"]) == 1
    assert len(list((tmp_path / "o" / "pages").glob("*.png"))) == 2
    # the user's folder is untouched
    assert sorted(p.name for p in src.iterdir()) == ["page_000.png", "page_001.png", "page_001b.png"]


@pytest.fixture
def ran_ws(tmp_path, chapter_dir):
    ws = tmp_path / "ws"
    invoke("init", ws)
    for ref in sorted((chapter_dir / "references").glob("*.png")):
        invoke("character", "add", ref.stem, "--reference", ref, "-w", ws)
    invoke("add", "-w", ws, chapter_dir / "pages")
    invoke("run", "-w", ws)
    return ws


def test_rerun_redoes_nothing_and_override_redoes_only_its_page(ran_ws, chapter_dir):
    report = json.loads(invoke("run", "-w", ran_ws, "--json").stdout)
    assert report["done"] == 3 and report["cached"] == 3
    listing = json.loads(invoke("export", "-w", ran_ws, "--out", ran_ws / "x", "--json").stdout)
    page = next(p for p in listing["pages"] if p["characters"])
    char = page["characters"][0]
    names = [c["name"] for c in json.loads(invoke("character", "list", "-w", ran_ws, "--json").stdout)]
    new_name = next(n for n in names if n != char["identity"])
    invoke("override", "identity", page["position"], "--box", ",".join(map(str, char["box"])), "--name", new_name,
           "-w", ran_ws)
    report = json.loads(invoke("run", "-w", ran_ws, "--json").stdout)
    changed = [o for o in report["outcomes"] if o["recomputed"]]
    assert [o["page_id"] for o in changed] == [page["page_id"]]
    assert "detect" not in changed[0]["recomputed"]  # detections are reused
    listing = json.loads(invoke("export", "-w", ran_ws, "--out", ran_ws / "x", "--json").stdout)
    again = next(p for p in listing["pages"] if p["page_id"] == page["page_id"])
    fixed = [c for c in again["characters"] if c["box"] == char["box"]][0]
    assert fixed["identity"] == new_name and fixed["source"] == "override"
    # the override survives a second run unchanged
    assert json.loads(invoke("run", "-w", ran_ws, "--json").stdout)["cached"] == 3


def test_hint_override_changes_colour_near_the_point(ran_ws):
    status = json.loads(invoke("status", "-w", ran_ws, "--json").stdout)
    before = read_rgb(status[0]["output"]).copy()
    listing = json.loads(invoke("export", "-w", ran_ws, "--out", ran_ws / "x", "--json").stdout)
    panel = listing["pages"][0]["panels"][0]
    x0, y0, x1, y1 = panel["box"]
    # users pin colours on paper or tone, not on a line: the light pixel nearest the panel's centre
    light = rgb_to_lab(np.ascontiguousarray(before))[..., 0] > 80
    for t in listing["pages"][0]["texts"]:  # balloons stay white whatever the hints say
        tx0, ty0, tx1, ty1 = t["box"]
        light[max(0, ty0 - 12):ty1 + 12, max(0, tx0 - 12):tx1 + 12] = False
    ys, xs = np.nonzero(light[y0 + 8:y1 - 8, x0 + 8:x1 - 8])
    k = np.argmin((xs - (x1 - x0) / 2 + 8) ** 2 + (ys - (y1 - y0) / 2 + 8) ** 2)
    x, y = int(x0 + 8 + xs[k]), int(y0 + 8 + ys[k])
    invoke("override", "hint", 0, x, y, "#20c040", "-w", ran_ws)
    invoke("run", "-w", ran_ws)
    after = read_rgb(status[0]["output"])
    win = (slice(max(0, y - 6), y + 6), slice(max(0, x - 6), x + 6))
    lab_b, lab_a = rgb_to_lab(np.ascontiguousarray(before[win])), rgb_to_lab(np.ascontiguousarray(after[win]))
    assert np.abs(lab_a[..., 1:] - lab_b[..., 1:]).mean() > 1.0


def test_character_commands_and_errors(tmp_path, chapter_dir):
    ws = tmp_path / "ws"
    invoke("init", ws)
    ref = sorted((chapter_dir / "references").glob("*.png"))[0]
    r = invoke("character", "add", "Nana", "--reference", ref, "-w", ws, "--json")
    assert json.loads(r.stdout)["palette"]
    r = invoke("character", "add", "Nana", "--reference", ref, "-w", ws, ok=False)
    assert r.exit_code == 1 and "already registered" in r.output
    r = invoke("character", "add", "Bad", "--reference", tmp_path / "none.png", "-w", ws, ok=False)
    assert r.exit_code == 1 and "no such file" in r.output
    assert [c["name"] for c in json.loads(invoke("character", "list", "-w", ws, "--json").stdout)] == ["Nana"]
    invoke("character", "remove", "Nana", "-w", ws)
    r = invoke("character", "remove", "Nana", "-w", ws, ok=False)
    assert r.exit_code == 1 and "no character" in r.output
    r = invoke("run", "-w", tmp_path / "nowhere", ok=False)
    assert r.exit_code == 1 and "not a workspace" in r.output
    r = invoke("run", "-w", ws, "--set", "identify.treshold=1", ok=False)
    assert r.exit_code == 1 and "did you mean" in r.output


def test_colorize_one_off_pages_with_references(tmp_path, chapter_dir):
    refs = sorted((chapter_dir / "references").glob("*.png"))
    pages = sorted((chapter_dir / "pages").glob("*.png"))[:2]
    args = ["colorize", *pages, "--out", tmp_path / "out", "--json"]
    for ref in refs:
        args += ["--reference", f"{ref.stem}={ref}"]
    args += ["--reference", f"scene={chapter_dir / 'color' / 'page_002.png'}"]
    report = json.loads(invoke(*args).stdout)
    assert [Path(p["output"]).name for p in report["pages"]] == ["page_000.png", "page_001.png"]
    for p in report["pages"]:
        bw = np.asarray(Image.open(p["input"]).convert("L"))
        lab = rgb_to_lab(read_rgb(p["output"]))
        L0 = gray_to_L(bw)
        # lines keep their lightness; paper only darkens (flat colour on the named characters), boundedly
        assert np.abs(lab[..., 0] - L0)[L0 < 40].max() <= 1.0
        assert (lab[..., 0] - L0).max() <= 1.0 and (L0 - lab[..., 0]).max() <= 31.0


def _run_cli_subprocess(args, **kw):
    return subprocess.Popen([sys.executable, "-c", "from manga_pipeline.cli import main; main()", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_finished_pages(tmp_path):
    src = tmp_path / "src"
    write_chapter(generate_chapter(5, seed=3, size=SIZE), src)
    for name in ("killed", "clean"):
        invoke("init", tmp_path / name)
        invoke("add", "-w", tmp_path / name, src / "pages")
    clean = _run_cli_subprocess(["run", "-w", tmp_path / "clean"])
    assert clean.wait(timeout=600) == 0
    # kill the run as soon as two pages are finished, then run again
    proc = _run_cli_subprocess(["run", "-w", tmp_path / "killed"])
    db = tmp_path / "killed" / "workspace.sqlite"
    deadline = time.time() + 600
    done = 0
    while time.time() < deadline and proc.poll() is None:
        with sqlite3.connect(db) as conn:
            done = conn.execute("SELECT COUNT(*) FROM page_results WHERE status='done'").fetchone()[0]
        if done >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert 2 <= done < 5, "the run finished before it could be killed"
    report = json.loads(invoke("run", "-w", tmp_path / "killed", "--json").stdout)
    assert report["done"] == 5 and report["failed"] == 0
    assert report["cached"] >= 2
    clean_out = sorted((tmp_path / "clean" / "output").glob("*.png"))
    killed_out = sorted((tmp_path / "killed" / "output").glob("*.png"))
    assert [p.name for p in clean_out] == [p.name for p in killed_out]
    for a, b in zip(clean_out, killed_out):
        assert np.array_equal(read_rgb(a), read_rgb(b)), a.name
    assert not list((tmp_path / "killed").rglob("*.part*"))
