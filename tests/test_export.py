"""Exports a reader or an artist opens: a PDF with one page per coloured page at its own pixel size, and the colour
layers alone (RGBA) that rebuild the coloured page under the line art."""
from __future__ import annotations

import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, PdfParser

from manga_pipeline.cli import main
from manga_pipeline.colorspace import rgb_to_lab
from manga_pipeline.synthetic import generate_chapter, write_chapter

W, H = 300, 420


def invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_chapter(generate_chapter(3, seed=4, size=(W, H)), root / "chapter")
    ws = root / "ws"
    invoke("init", ws)
    for ref in sorted((root / "chapter" / "references").glob("*.png")):
        invoke("character", "add", ref.stem, "--reference", ref, "-w", ws)
    invoke("add", "-w", ws, root / "chapter" / "pages")
    invoke("run", "-w", ws)
    return ws


def _pdf_pages(path) -> list[tuple[list, Image.Image]]:
    """(MediaBox, embedded image) of every page, read through the PDF's latest cross-reference table."""
    pdf = PdfParser.PdfParser(str(path))
    try:
        out = []
        for ref in pdf.pages:
            page = pdf.read_indirect(ref)
            (image_ref,) = page[b"Resources"][b"XObject"].values()
            stream = pdf.read_indirect(image_ref)
            assert (stream.dictionary[b"Width"], stream.dictionary[b"Height"]) == (W, H)
            out.append((list(page[b"MediaBox"]), Image.open(io.BytesIO(stream.buf)).convert("RGB")))
        return out
    finally:
        pdf.close()


def test_pdf_has_every_coloured_page_at_its_pixel_size(ws, tmp_path):
    r = invoke("export", "-w", ws, "--out", tmp_path / "chapter.pdf")
    assert "exported 3 page(s)" in r.output
    pages = _pdf_pages(tmp_path / "chapter.pdf")
    outputs = sorted((ws / "output").glob("*.png"))
    assert len(pages) == len(outputs) == 3
    for (box, image), png in zip(pages, outputs):
        assert box == [0, 0, W * 72 / 300, H * 72 / 300]  # 300 dpi by default
        assert image.size == (W, H)
        # the page itself, JPEG-compressed, in reading order
        assert np.abs(np.asarray(image, np.int16) - _rgb(png)).mean() < 3.0
    invoke("export", "-w", ws, "--out", tmp_path / "a4ish.pdf", "--dpi", 72)
    assert _pdf_pages(tmp_path / "a4ish.pdf")[0][0] == [0, 0, W, H]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a4ish.pdf", "chapter.pdf"]  # nothing half-written


def test_colour_layer_is_the_colour_alone(ws, tmp_path):
    r = invoke("export", "-w", ws, "--out", tmp_path / "layers", "--layer")
    assert "exported 3 colour layer(s)" in r.output
    layers = sorted((tmp_path / "layers").glob("*.png"))
    outputs = sorted((ws / "output").glob("*.png"))
    pages = sorted((ws.parent / "chapter" / "pages").glob("*.png"))  # positions 0, 1, 2
    coloured_somewhere = False
    for layer_path, out_path, page_path in zip(layers, outputs, pages):
        with Image.open(layer_path) as im:
            assert im.mode == "RGBA" and im.size == (W, H)
            layer = np.asarray(im)
        out = _rgb(out_path)
        gray = np.asarray(Image.open(page_path).convert("L"))
        lab = rgb_to_lab(out)
        chroma = np.hypot(lab[..., 1], lab[..., 2])
        alpha = layer[..., 3]
        # on paper: (nearly) transparent where the page shows no colour, opaque where it is coloured
        paper = gray == 255
        assert alpha[paper & (chroma < 0.5)].max(initial=0) <= 32
        strong = chroma > 12
        coloured_somewhere |= bool((paper & strong).any())
        assert (alpha[paper & strong] == 255).all() and (alpha[strong] > 0).all()
        # on white paper the layer is exactly the coloured page (the flats under the ink); on ink it is lighter
        assert np.array_equal(layer[..., :3][paper], out[paper])
        ink = (gray < 60) & strong
        assert (layer[..., :3][ink].astype(int).sum(axis=1) >= out[ink].astype(int).sum(axis=1)).all()
    assert coloured_somewhere, "no page got colour: the layer test would prove nothing"


def test_layer_of_a_page_whose_output_changed_is_refused_alone(ws, tmp_path):
    import shutil

    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    victim = sorted((copy / "output").glob("*.png"))[1]
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(victim)  # someone painted over page 2
    r = invoke("export", "-w", copy, "--out", tmp_path / "layers", "--layer", code=3)
    refused = [line for line in r.stderr.splitlines() if line.startswith("not exported")]
    assert len(refused) == 1 and "run `manga-color run` again" in refused[0]
    assert sorted(p.name for p in (tmp_path / "layers").iterdir()) == ["0001.png", "0003.png"]


def test_layer_needs_an_alpha_format(ws, tmp_path):
    r = invoke("export", "-w", ws, "--out", tmp_path / "x.pdf", "--layer", code=2)
    assert "--layer writes RGBA images" in r.output
    r = invoke("export", "-w", ws, "--out", tmp_path / "x", "--format", "jpg", "--layer", code=2)
    assert not (tmp_path / "x").exists()
