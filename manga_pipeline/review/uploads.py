"""Checking images users upload to the review server, and cutting B/W samples out of pages.

An upload must be at most ``MAX_UPLOAD_BYTES``, start with the signature of a format browsers and PIL both read
(PNG, JPEG, WebP, GIF, BMP, TIFF: checked before any decoder sees the bytes, so no exotic PIL plugin runs on user
data), and decode with ``imageio.decode_image``, which refuses decompression bombs and corrupt files.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..imageio import ImageError, LoadedImage, decode_image
from ..records import Box, check_box

MAX_UPLOAD_BYTES = 20 * 1024 * 1024

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes, or None when it is not one we accept."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for sig, fmt in _SIGNATURES:
        if data.startswith(sig):
            return fmt
    return None


def check_upload(data: bytes, name: str) -> LoadedImage:
    """Decode an uploaded image or raise ImageError with a one-line reason."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"{name}: {len(data) / 2**20:.1f} MB is more than the {MAX_UPLOAD_BYTES // 2**20} MB upload limit")
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if sniff_format(data) is None:
        raise ImageError(f"{name}: not an image file (upload PNG, JPEG, WebP, GIF, BMP or TIFF)")
    return decode_image(data, name)


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 gray (H, W) or RGB (H, W, 3) as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def crop_sample(gray: np.ndarray, box) -> tuple[Box, bytes]:
    """The (clipped box, PNG bytes) of ``box`` cut out of a uint8 (H, W) page: a B/W sample for the bank."""
    h, w = gray.shape
    x0, y0, x1, y1 = check_box(box, what="character box")
    box = check_box((max(0, x0), max(0, y0), min(w, x1), min(h, y1)), w, h, what="character box")
    x0, y0, x1, y1 = box
    if (x1 - x0) < 8 or (y1 - y0) < 8:
        raise ImageError(f"box {list(box)} is too small for a character sample (need at least 8x8 pixels)")
    return box, png_bytes(gray[y0:y1, x0:x1])
