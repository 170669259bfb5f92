"""`character export/import`: a bank travels as one file, and a damaged or foreign file is refused with one line."""
from __future__ import annotations

import json
import zipfile

import pytest

from manga_pipeline.synthetic import generate_chapter, write_chapter
from manga_pipeline.workspace import Workspace
from tests.clihelp import invoke


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A workspace with three characters (one also with a B/W sample) and its exported bank."""
    root = tmp_path_factory.mktemp("bank")
    write_chapter(generate_chapter(1, seed=5, size=(300, 420)), root / "ch")
    refs = sorted((root / "ch" / "references").glob("*.png"))
    invoke("init", root / "ws")
    for ref in refs:
        invoke("character", "add", "-w", root / "ws", ref.stem, "--reference", ref)
    invoke("character", "add", "-w", root / "ws", refs[0].stem, "--reference", refs[0],
           "--sample", root / "ch" / "pages" / "page_000.png", "--replace")
    invoke("character", "export", "-w", root / "ws", root / "bank.zip")
    return root


def _fingerprints(ws):
    with Workspace.open(ws) as w:
        return {e.name: (e.fingerprint, [k for k, _ in e.images]) for e in w.bank()}


def test_export_import_round_trip_keeps_every_character_exactly(tmp_path, exported):
    invoke("init", tmp_path / "team")
    r = invoke("character", "import", "-w", tmp_path / "team", exported / "bank.zip", "--json")
    assert len(json.loads(r.stdout)["added"]) == 3
    # same names, palettes, images (reference + sample) and derived features: same fingerprints, so the same
    # cache keys and colours as where the bank was built
    assert _fingerprints(tmp_path / "team") == _fingerprints(exported / "ws")
    listed = invoke("character", "list", "-w", tmp_path / "team", "--json").stdout
    assert listed == invoke("character", "list", "-w", exported / "ws", "--json").stdout
    # importing again changes nothing
    r = invoke("character", "import", "-w", tmp_path / "team", exported / "bank.zip", "--json")
    assert json.loads(r.stdout)["added"] == [] and len(json.loads(r.stdout)["unchanged"]) == 3


def test_export_only_named_characters(tmp_path, exported):
    name = sorted(_fingerprints(exported / "ws"))[1]
    invoke("character", "export", "-w", exported / "ws", tmp_path / "one.zip", "--name", name)
    invoke("init", tmp_path / "w")
    invoke("character", "import", "-w", tmp_path / "w", tmp_path / "one.zip")
    assert list(_fingerprints(tmp_path / "w")) == [name]
    r = invoke("character", "export", "-w", exported / "ws", tmp_path / "x.zip", "--name", "Nobody", ok=False)
    assert r.exit_code == 1 and "no character named 'Nobody'" in r.output
    invoke("init", tmp_path / "empty")
    r = invoke("character", "export", "-w", tmp_path / "empty", tmp_path / "y.zip", ok=False)
    assert r.exit_code == 1 and "empty" in r.output and not (tmp_path / "y.zip").exists()


def test_a_different_character_of_the_same_name_needs_replace(tmp_path, exported):
    ws = tmp_path / "w"
    invoke("init", ws)
    name = sorted(_fingerprints(exported / "ws"))[0]
    other = exported / "ch" / "references" / f"{sorted(_fingerprints(exported / 'ws'))[2]}.png"
    invoke("character", "add", "-w", ws, name, "--reference", other)
    before = _fingerprints(ws)
    r = invoke("character", "import", "-w", ws, exported / "bank.zip", ok=False)
    assert r.exit_code == 1 and f"different '{name}'" in r.output and "--replace" in r.output
    assert _fingerprints(ws) == before  # nothing half-imported
    r = invoke("character", "import", "-w", ws, exported / "bank.zip", "--replace", "--json")
    assert json.loads(r.stdout)["replaced"] == [name]
    assert _fingerprints(ws) == _fingerprints(exported / "ws")


def _rewrite(src, dst, edit):
    """Copy archive ``src`` to ``dst`` with ``edit(name, data) -> data`` applied to every member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))
    return dst


def _edit_index(change):
    def edit(name, data):
        if name != "bank.json":
            return data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()
    return edit


def _flip_image(name, data):
    return data[:-20] + bytes(20) if name.startswith("images/") else data


@pytest.mark.parametrize("make, message", [
    (lambda src, dst: dst.write_text("not a zip"), "not a readable ZIP"),
    (lambda src, dst: zipfile.ZipFile(dst, "w").writestr("x.txt", "hi"), "bank.json is missing"),
    (lambda src, dst: _rewrite(src, dst, _edit_index(lambda d: d.update(version=99))),
     "version 99 is not supported"),
    (lambda src, dst: _rewrite(src, dst, _edit_index(lambda d: d.update(format="other"))),
     "not a manga-color character bank"),
    (lambda src, dst: _rewrite(src, dst, _flip_image), "does not match its sha256"),
    (lambda src, dst: _rewrite(src, dst, _edit_index(
        lambda d: d["characters"][0]["features"]["palette"].append("#000000"))), "fingerprint mismatch"),
    (lambda src, dst: _rewrite(src, dst, _edit_index(lambda d: d["characters"][0].update(name="a/b"))),
     "is not valid"),
    (lambda src, dst: _rewrite(src, dst, lambda n, d: d if n != "descriptors/0.npy" else d[:100]),
     "descriptors do not match their sha256"),
])
def test_damaged_or_foreign_archives_are_refused_with_one_line(tmp_path, exported, make, message):
    bad = tmp_path / "bad.zip"
    make(exported / "bank.zip", bad)
    invoke("init", tmp_path / "w")
    r = invoke("character", "import", "-w", tmp_path / "w", bad, ok=False)
    assert r.exit_code == 1
    assert message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert _fingerprints(tmp_path / "w") == {}
