"""Bad inputs and killed runs, as a user meets them: a chapter folder full of broken, odd and hostile files, and
`manga-color run` killed with SIGKILL at random moments.

Every bad input gets one line that names it, the rest of the chapter is coloured, the user's files are never
touched, and a chapter run killed any number of times ends with the same bytes as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from manga_pipeline.cli import main
from manga_pipeline.synthetic import generate_chapter, write_chapter

W, H = 300, 420  # tiny pages: the suite stays fast


# --- making bad files ---------------------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_claiming(w: int, h: int) -> bytes:
    """A well-formed PNG header that claims w x h pixels, with no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"") + _chunk(b"IEND", b"")


def _png_bomb(w: int, h: int) -> bytes:
    """A real w x h black PNG: a few hundred KB that would decode to w*h bytes."""
    comp = zlib.compressobj(9)
    row = b"\0" * (w + 1)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _gif_claiming(w: int, h: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HH", w, h) + b"\x00\x00\x00" + b",\x00\x00\x00\x00" + struct.pack("<HH", w, h)
            + b"\x00\x02\x02D\x01\x00;")


def _jpeg_claiming(jpg: bytes, w: int, h: int) -> bytes:
    i = jpg.index(b"\xff\xc0")  # baseline SOF0: length (2), precision (1), height (2), width (2)
    return jpg[:i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:]


def _flip(data: bytes, start: int, n: int = 24) -> bytes:
    b = bytearray(data)
    for k in range(start, min(len(b), start + n)):
        b[k] ^= 0x5A
    return bytes(b)


def _zip(members, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _patch_member(data: bytes, name: str, *, flag: int | None = None, method: int | None = None,
                  size: int | None = None) -> bytes:
    """Rewrite a member's general-purpose flag, compression method or uncompressed size in both its central
    directory entry and its local header (what a damaged or exotic archive looks like)."""
    b = bytearray(data)
    i = 0
    while (i := b.find(b"PK\x01\x02", i)) >= 0:
        nlen = struct.unpack_from("<H", b, i + 28)[0]
        if bytes(b[i + 46:i + 46 + nlen]) == name.encode():
            local = struct.unpack_from("<I", b, i + 42)[0]
            for base in (i + 8, local + 6):  # the flag field; method follows it, size sits 16 bytes further
                if flag is not None:
                    struct.pack_into("<H", b, base, struct.unpack_from("<H", b, base)[0] | flag)
                if method is not None:
                    struct.pack_into("<H", b, base + 2, method)
                if size is not None:
                    struct.pack_into("<I", b, base + 16, size)
        i += 4
    return bytes(b)


def _art(seed: int) -> np.ndarray:
    """A small B/W page-like image (lines and a noise block) that is not one of the chapter's pages."""
    rng = np.random.default_rng(seed)
    a = np.full((H, W), 255, np.uint8)
    a[40:380:60, 20:280] = 0
    a[100:300, 100:200] = rng.integers(0, 2, (200, 100)).astype(np.uint8) * 255
    return a


# what each input must end as: "rejected" (one line, nothing coloured), "page" (coloured, one output),
# "duplicate" (one note line, stored once), "page-or-failed" (a strange but decodable page: coloured, or one
# "failed" line), "ignored" (not a page at all: no line, no output)
REJECTED, PAGE, DUPLICATE, PAGE_OR_FAILED = "rejected", "page", "duplicate", "page-or-failed"


# the reason a rejected input's line must give (by file-name prefix)
REASONS = {
    "bad_trunc_": "corrupt|truncated", "bad_flip_": "corrupt|truncated", "bad_random_after": "corrupt|truncated",
    "bad_empty": "empty", "bad_huge": "limit|too large", "bad_bomb": "limit|too large", "bad_pdf": "PDF",
    "bad_zip_named": "ZIP archive", "bad_tiny": "too small", "bad_one_pixel": "too small",
    "bad_text": "not an image", "bad_html": "not an image", "bad_unreadable": "cannot read",
    "bad_truncated.cbz": "not a readable ZIP", "bad_no_images": "no images", "bad_not_a_zip": "not a readable ZIP",
    "zip_trunc": "corrupt|truncated", "zip_text": "not an image", "zip_empty": "empty", "zip_huge": "too large",
    "zip_encrypted": "encrypted", "zip_ppmd": "compression method", "zip_bad_crc": "CRC",
    "zip_claims_300mb": "over the limit", "zip_escape": "outside the archive",
}


def bad_inputs(good_png: bytes) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, expectation) of every bad, odd or hostile input the chapter folder gets."""
    gray = Image.fromarray(_art(1))
    png = _encode(gray)
    jpg = _encode(gray, "JPEG", quality=90)
    rgb = Image.fromarray(np.dstack([_art(2)] * 3))
    items = []
    # truncated files, cut at several offsets
    for cut in (8, 33, 60, len(png) // 3, len(png) // 2, len(png) - 40):
        items.append((f"bad_trunc_png_{cut:05d}.png", png[:cut], REJECTED))
    for cut in (3, 100, len(jpg) // 2, len(jpg) - 200):
        items.append((f"bad_trunc_jpg_{cut:05d}.jpg", jpg[:cut], REJECTED))
    items.append(("bad_trunc_webp.webp", _encode(gray, "WEBP")[:60], REJECTED))
    items.append(("bad_trunc_tif.tif", _encode(gray, "TIFF")[:300], REJECTED))
    # corrupt: bytes flipped inside the pixel data, or after a good header
    items.append(("bad_flip_png_idat.png", _flip(png, png.index(b"IDAT") + 8), REJECTED))
    items.append(("bad_flip_png_ihdr.png", _flip(png, 12, 8), REJECTED))
    items.append(("bad_random_after_sig.png", b"\x89PNG\r\n\x1a\n" + os.urandom(500), REJECTED))
    items.append(("bad_random_after_soi.jpg", b"\xff\xd8\xff\xe0" + os.urandom(500), REJECTED))
    # empty files
    for ext in ("png", "jpg", "webp", "gif"):
        items.append((f"bad_empty.{ext}", b"", REJECTED))
    # not images at all, named as images
    items.append(("bad_text.png", b"this is a text file, not a page\n" * 5, REJECTED))
    items.append(("bad_html.jpg", b"<!doctype html><html><body>404 Not Found</body></html>", REJECTED))
    items.append(("bad_json.webp", json.dumps({"page": 3}).encode(), REJECTED))
    items.append(("bad_pdf.png", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n", REJECTED))
    items.append(("bad_svg.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="420"/>', REJECTED))
    items.append(("bad_elf.jpg", b"\x7fELF\x02\x01\x01" + bytes(200), REJECTED))
    items.append(("bad_zip_named.png", _zip([("a.txt", b"hello")]), REJECTED))
    items.append(("bad_random.gif", os.urandom(2048), REJECTED))
    items.append(("bad_random.tiff", b"II*\x00" + os.urandom(400), REJECTED))
    # huge dimensions and decompression bombs: refused before any pixel is decoded
    items.append(("bad_huge_header.png", _png_claiming(100_000, 100_000), REJECTED))
    items.append(("bad_huge_wide.png", _png_claiming(2_000_000, 40), REJECTED))
    items.append(("bad_bomb_9000x7000.png", _png_bomb(9000, 7000), REJECTED))
    items.append(("bad_huge.gif", _gif_claiming(65535, 65535), REJECTED))
    items.append(("bad_huge_sof.jpg", _jpeg_claiming(jpg, 65000, 65000), REJECTED))
    # too small to be a page
    items.append(("bad_tiny_4x4.png", _encode(Image.new("L", (4, 4), 255)), REJECTED))
    items.append(("bad_one_pixel.gif", _encode(Image.new("P", (1, 1)), "GIF"), REJECTED))
    # odd modes of real pages: all must be coloured
    items.append(("odd_cmyk.jpg", _encode(rgb.convert("CMYK"), "JPEG", quality=90), PAGE))
    items.append(("odd_cmyk.tif", _encode(Image.fromarray(_art(3)).convert("CMYK"), "TIFF"), PAGE))
    items.append(("odd_16bit.png", _encode(Image.fromarray(_art(4).astype(np.uint16) * 257)), PAGE))
    rgba = Image.fromarray(np.dstack([_art(5)] * 3 + [np.where(_art(5) > 0, 0, 255).astype(np.uint8)]), "RGBA")
    items.append(("odd_alpha.png", _encode(rgba), PAGE))
    items.append(("odd_gray_alpha.png", _encode(Image.fromarray(_art(6)).convert("LA")), PAGE))
    items.append(("odd_palette.png", _encode(Image.fromarray(_art(7)).convert("P")), PAGE))
    pal = Image.fromarray(_art(8)).convert("P")
    pal.info["transparency"] = 0
    items.append(("odd_palette_transparent.png", _encode(pal, transparency=0), PAGE))
    items.append(("odd_1bit.png", _encode(Image.fromarray(_art(9)).convert("1")), PAGE))
    items.append(("odd_1bit.tif", _encode(Image.fromarray(_art(10)).convert("1"), "TIFF"), PAGE))
    frames = [Image.fromarray(_art(11)).convert("P"), Image.fromarray(_art(12)).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    items.append(("odd_animated.gif", buf.getvalue(), PAGE))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    items.append(("odd_exif_rotated.jpg", _encode(Image.fromarray(_art(13)), "JPEG", exif=exif), PAGE))
    # odd extensions of real pages
    items.append(("odd_upper.PNG", _encode(Image.fromarray(_art(14))), PAGE))
    items.append(("odd_png_named.jpg", _encode(Image.fromarray(_art(15))), PAGE))
    items.append(("odd_jpeg_named.webp", _encode(Image.fromarray(_art(16)), "JPEG"), PAGE))
    items.append(("odd_ext.jpeg", _encode(Image.fromarray(_art(17)), "JPEG"), PAGE))
    items.append(("odd_bmp.bmp", _encode(Image.fromarray(_art(18)), "BMP"), PAGE))
    # decodable but strange: coloured, or one clear "failed" line
    items.append(("odd_strip_3000x9.png", _encode(Image.new("L", (3000, 9), 200)), PAGE_OR_FAILED))
    items.append(("odd_min_8x8.png", _encode(Image.new("L", (8, 8), 128)), PAGE_OR_FAILED))
    items.append(("odd_all_black.png", _encode(Image.new("L", (W, H), 0)), PAGE_OR_FAILED))
    items.append(("odd_all_white.png", _encode(Image.new("L", (W, H), 255)), PAGE_OR_FAILED))
    noise = np.random.default_rng(0).integers(0, 256, (H, W), dtype=np.uint8)
    items.append(("odd_noise.png", _encode(Image.fromarray(noise)), PAGE_OR_FAILED))
    # the same page twice (once under another extension)
    items.append(("zz_dup_page_copy.png", good_png, DUPLICATE))  # "zz": after the page it copies
    items.append(("zz_dup_page_copy_ext.PNG", good_png, DUPLICATE))
    return items


def bad_archive() -> tuple[bytes, list[tuple[str, str]]]:
    """A CBZ whose members are bad in every way an archive can be: (bytes, [(member, expectation)])."""
    gray = Image.fromarray(_art(20))
    png, jpg = _encode(gray), _encode(gray, "JPEG")
    good = _encode(Image.fromarray(_art(21)))
    members = [
        ("zip_good.png", good, PAGE),
        ("zip_good_again.png", good, DUPLICATE),
        ("zip_trunc.png", png[: len(png) // 2], REJECTED),
        ("zip_text.png", b"not an image", REJECTED),
        ("zip_empty.jpg", b"", REJECTED),
        ("zip_trunc.jpg", jpg[:150], REJECTED),
        ("zip_huge.png", _png_claiming(90_000, 90_000), REJECTED),
        ("zip_encrypted.png", png, REJECTED),
        ("zip_ppmd.png", png, REJECTED),
        ("zip_bad_crc.png", png, REJECTED),
        ("zip_claims_300mb.png", png, REJECTED),
        ("../../zip_escape.png", _encode(Image.fromarray(_art(22))), REJECTED),
        ("__MACOSX/._zip_good.png", b"\x00\x05\x16\x07", "ignored"),
        ("zip_notes.txt", b"scanlation credits", "ignored"),
    ]
    data = _zip([(n, d) for n, d, _ in members])
    data = _patch_member(data, "zip_encrypted.png", flag=0x1)
    data = _patch_member(data, "zip_ppmd.png", method=98)
    data = _patch_member(data, "zip_claims_300mb.png", size=300 * 2**20)
    # a wrong CRC: flip the stored CRC in both headers
    b = bytearray(data)
    for sig, off in ((b"PK\x01\x02", 16), (b"PK\x03\x04", 14)):
        i = 0
        while (i := b.find(sig, i)) >= 0:
            name_at = i + (46 if sig == b"PK\x01\x02" else 30)
            nlen = struct.unpack_from("<H", b, i + (28 if sig == b"PK\x01\x02" else 26))[0]
            if bytes(b[name_at:name_at + nlen]) == b"zip_bad_crc.png":
                struct.pack_into("<I", b, i + off, struct.unpack_from("<I", b, i + off)[0] ^ 0xFFFF)
            i += 4
    return bytes(b), [(n, e) for n, _, e in members]


def _snapshot(folder: Path) -> dict:
    """sha256, size, mode and mtime of every file under ``folder`` (what 'untouched' means)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest() if os.access(p, os.R_OK)
                                               else None, st.st_size, st.st_mode, st.st_mtime_ns)
    return out


def _chapter_pages(root: Path, n: int, seed: int) -> list[Path]:
    write_chapter(generate_chapter(n, seed=seed, size=(W, H)), root)
    return sorted((root / "pages").glob("*.png"))


# --- the bad chapter ----------------------------------------------------------------------------------------


def test_every_bad_input_gets_one_line_and_the_rest_of_the_chapter_is_coloured(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = _chapter_pages(tmp_path / "gen", 3, seed=11)
    for p in good:
        (src / p.name).write_bytes(p.read_bytes())
    expect: dict[str, str] = {p.name: PAGE for p in good}
    for name, data, what in bad_inputs(good[1].read_bytes()):
        (src / name).write_bytes(data)
        expect[name] = what
    cbz, members = bad_archive()
    (src / "bad_members.cbz").write_bytes(cbz)
    for member, what in members:
        expect[member] = what
    (src / "bad_truncated.cbz").write_bytes(cbz[: len(cbz) // 2])
    (src / "bad_no_images.cbz").write_bytes(_zip([("credits.txt", b"thanks")]))
    (src / "bad_not_a_zip.cbz").write_bytes(b"PK\x03\x04 this is no archive")
    expect.update({"bad_truncated.cbz": REJECTED, "bad_no_images.cbz": REJECTED, "bad_not_a_zip.cbz": REJECTED})
    (src / "readme.txt").write_text("not a page: ignored without a word")
    expect["readme.txt"] = "ignored"
    unreadable = src / "bad_unreadable.png"
    unreadable.write_bytes(good[2].read_bytes()[:-1] + b"\x00")
    unreadable.chmod(0)
    if os.access(unreadable, os.R_OK):  # root reads anything: then it is one more odd page
        unreadable.chmod(0o644)
        unreadable.write_bytes(_encode(Image.fromarray(_art(30))))
        expect["bad_unreadable.png"] = PAGE
    else:
        expect["bad_unreadable.png"] = REJECTED
    n_bad = sum(name not in {p.name for p in good} and what != "ignored" for name, what in expect.items())
    assert n_bad >= 50
    before = _snapshot(src)

    result = CliRunner().invoke(main, ["run", str(src), "--out", str(tmp_path / "out"), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 3, result.output  # finished, some inputs failed
    report = json.loads(result.stdout)
    lines = result.stderr.splitlines()

    def lines_naming(name: str) -> list[str]:
        base = Path(name).name
        return [line for line in lines
                if f"/{base}:" in line or f"!{base}:" in line or line.startswith(f"failed {base}:")]

    pages_db = tmp_path / "out" / "workspace" / "workspace.sqlite"
    with sqlite3.connect(pages_db) as conn:
        stored = {Path(n.split("!")[-1]).name: pid for n, pid in conn.execute("SELECT name, page_id FROM pages")}
    outcome = {o["page_id"]: o for o in report["outcomes"]}
    for name, what in expect.items():
        base = Path(name).name
        said = lines_naming(name)
        if what == REJECTED:
            assert len(said) == 1 and said[0].startswith("skipped "), (name, said)
            assert base not in stored, name
            why = next((w for prefix, w in REASONS.items() if base.startswith(prefix)), "")
            assert re.search(why, said[0].split(f"{base}:", 1)[1]), (name, said[0])
        elif what == PAGE:
            assert said == [], (name, said)
            assert outcome[stored[base]]["status"] == "done", (name, outcome[stored[base]])
        elif what == DUPLICATE:
            assert len(said) == 1 and said[0].startswith("note ") and "same image as" in said[0], (name, said)
        elif what == PAGE_OR_FAILED:
            o = outcome[stored[base]]
            if o["status"] == "done":
                assert said == [], (name, said)
            else:
                assert o["status"] == "failed" and len(said) == 1 and said[0].startswith("failed "), (name, said)
        else:
            assert said == [] and base not in stored, (name, said)
    # one line per problem, no line without a problem, every line a single line of text
    problems = [line for line in lines if line.startswith(("skipped ", "note ", "failed "))]
    expected_lines = sum(1 for w in expect.values() if w in (REJECTED, DUPLICATE))
    assert len(problems) == expected_lines + report["failed"]
    # the coloured chapter holds every page that could be read, once, in order
    exported = sorted((tmp_path / "out" / "pages").glob("*.png"))
    assert len(exported) == report["done"] + report["skipped"] == len(stored) - report["failed"]
    assert report["done"] >= sum(w == PAGE for w in expect.values())
    # the user's files are untouched, nothing half-written is left behind
    unreadable.chmod(0o644)
    after = _snapshot(src)
    for rel, (sha, size, mode, mtime) in before.items():
        a_sha, a_size, _, a_mtime = after[rel]
        assert (a_size, a_mtime) == (size, mtime) and (sha is None or a_sha == sha), rel
    assert sorted(after) == sorted(before)
    assert not list((tmp_path / "out").rglob("*.part*"))


# --- killed runs ----------------------------------------------------------------------------------------------


def _cli(args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from manga_pipeline.cli import main; main()", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


@pytest.mark.slow
def test_a_chapter_run_killed_at_random_moments_ends_as_an_uninterrupted_one(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for p in _chapter_pages(tmp_path / "gen", 4, seed=21):
        (src / p.name).write_bytes(p.read_bytes())
    (src / "page_zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    t0 = time.perf_counter()
    clean = _cli(["run", src, "--out", tmp_path / "clean"])
    assert clean.wait(timeout=600) == 3  # 3: the broken input is reported
    uninterrupted = time.perf_counter() - t0

    rng = random.Random(2026)
    killed = tmp_path / "killed"
    kills = 0
    for attempt in range(5):
        workers = 1 + attempt % 2
        proc = _cli(["run", src, "--out", killed, "--workers", workers])
        try:
            proc.wait(timeout=rng.uniform(0.15, 1.0) * uninterrupted)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            kills += 1
    assert kills >= 3, "the runs finished before they could be killed"
    result = CliRunner().invoke(main, ["run", str(src), "--out", str(killed), "--workers", "2", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert (report["pages"], report["done"], report["failed"]) == (4, 4, 0)  # nothing lost, nothing doubled
    assert len(report["rejected_inputs"]) == 1
    # the same bytes as the run nobody interrupted: workspace outputs and the exported pages
    want = _tree_bytes(tmp_path / "clean" / "pages")
    assert len(want) == 4
    assert _tree_bytes(killed / "pages") == want
    assert _tree_bytes(killed / "workspace" / "output") == _tree_bytes(tmp_path / "clean" / "workspace" / "output")
    with sqlite3.connect(killed / "workspace" / "workspace.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM pages").fetchone()[0] == 4
    assert not list(killed.rglob("*.part*"))


def test_an_output_folder_inside_the_chapter_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "page_000.png").write_bytes(_encode(Image.fromarray(_art(40))))
    before = _snapshot(src)
    result = CliRunner().invoke(main, ["run", str(src), "--out", str(src / "coloured")], catch_exceptions=False)
    assert result.exit_code == 2 and "is inside CHAPTER" in result.output
    assert _snapshot(src) == before  # nothing was created in the user's folder
