import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from manga_pipeline.colorspace import gray_to_L, rgb_to_lab
from manga_pipeline.imageio import ImageError, decode_image, iter_inputs, load_image, page_is_color


def _png(arr, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _page(h=64, w=48):
    rng = np.random.default_rng(0)
    return (rng.random((h, w)) * 255).astype(np.uint8)


def test_gray_page_round_trip_keeps_luminance():
    g = _page()
    img = decode_image(_png(g))
    assert img.gray.shape == (64, 48) and not img.is_color
    assert np.array_equal(img.gray, g)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"hello, I am a text file\n" * 10, "not an image"),
    (_png(_page())[:200], "corrupt or truncated"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not an image|corrupt"),
])
def test_bad_bytes_give_one_line_errors(data, match):
    with pytest.raises(ImageError, match=match) as exc:
        decode_image(data, "p.png")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("p.png")


def test_decompression_bomb_is_refused_before_decoding():
    # a valid PNG header claiming 50000 x 50000 pixels
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="decompression bomb|too large|limit"):
        decode_image(data, "bomb.png")


def test_odd_modes_decode():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: must read as white paper
    assert decode_image(_png(rgba)).gray.min() == 255
    sixteen = (np.arange(400, dtype=np.uint16).reshape(20, 20) * 160)
    img = decode_image(_png(sixteen))  # numpy uint16 -> a 16-bit PNG
    assert img.gray.max() > 200 and img.gray.min() < 10
    pal = Image.fromarray(_page(20, 20)).convert("P")
    buf = io.BytesIO(); pal.save(buf, format="PNG")
    assert decode_image(buf.getvalue()).gray.shape == (20, 20)
    cmyk = Image.new("CMYK", (20, 20), (0, 0, 0, 0))  # white paper with a red square
    cmyk.paste((0, 255, 255, 0), (5, 5, 15, 15))
    buf = io.BytesIO(); cmyk.save(buf, format="JPEG")
    img = decode_image(buf.getvalue())
    assert img.is_color and img.rgb[10, 10, 0] > 200


def test_colour_detection_ignores_paper_tint():
    tinted = np.full((100, 100, 3), (250, 240, 220), np.uint8)
    tinted[20:40, 20:80] = (30, 28, 25)
    assert not page_is_color(tinted)
    coloured = tinted.copy()
    coloured[50:90, 10:90] = (40, 90, 220)
    assert page_is_color(coloured)


def test_gray_matches_colour_lightness():
    rgb = np.array([[[200, 30, 40], [20, 200, 90]]], np.uint8)
    img = decode_image(_png(np.repeat(np.repeat(rgb, 8, 0), 8, 1)))
    L = rgb_to_lab(img.rgb)[..., 0]
    assert np.abs(gray_to_L(img.gray) - L).max() < 0.6


def test_inputs_expand_folders_and_archives_in_natural_order(tmp_path):
    for n in (10, 2, 1):
        (tmp_path / f"p{n}.png").write_bytes(_png(_page()))
    (tmp_path / "notes.txt").write_text("not a page")
    cbz = tmp_path / "ch.cbz"
    with zipfile.ZipFile(cbz, "w") as zf:
        zf.writestr("b/2.png", _png(_page()))
        zf.writestr("b/10.png", _png(_page()))
        zf.writestr("__MACOSX/._2.png", b"junk")
    items = iter_inputs([tmp_path / "p1.png", cbz, tmp_path / "missing.png"])
    names = [i.name for i in items]
    assert names[0].endswith("p1.png") and names[1].endswith("!b/2.png") and names[2].endswith("!b/10.png")
    assert items[3].error and "no such file" in items[3].error
    folder_items = iter_inputs([tmp_path])
    assert [i.name.rsplit("/", 1)[-1] for i in folder_items if not i.name.endswith(".cbz") and "!" not in i.name] == [
        "p1.png", "p2.png", "p10.png"]
    bad = tmp_path / "bad.cbz"
    bad.write_bytes(b"PK\x03\x04 broken")
    assert "not a readable ZIP" in iter_inputs([bad])[0].error


def test_load_image_reports_missing_and_folders(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
