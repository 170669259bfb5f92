"""Reading pages safely and writing images atomically.

Every way an input can be bad (missing, unreadable, empty, not an image, truncated, a decompression bomb, an odd
mode) ends in one ``ImageError`` with a one-line reason; nothing is modified and nothing half-written is left.
"""
from __future__ import annotations

import io
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .colorspace import rgb_to_gray
from .fsutil import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
ARCHIVE_SUFFIXES = (".zip", ".cbz")
MAX_PIXELS = 60_000_000  # a 6000x10000 page; bigger is refused as a likely decompression bomb
MAX_FILE_BYTES = 200 * 1024 * 1024


def _original_pil_open():
    """PIL's own Image.open: ultralytics replaces it on import with a wrapper that tries to pip-install a HEIF
    plugin when a file is not an image, which would turn "not an image" into an install attempt."""
    if Image.open.__module__ == "PIL.Image":
        return Image.open
    import sys

    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open)


_pil_open = _original_pil_open()


class ImageError(ValueError):
    """An input image cannot be used; the message is one line that says why."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded page: ``rgb`` uint8 (H, W, 3) and ``gray`` uint8 (H, W) (L*-preserving), white under alpha."""

    rgb: np.ndarray = field(repr=False)
    gray: np.ndarray = field(repr=False)
    is_color: bool

    @property
    def width(self) -> int:
        return int(self.gray.shape[1])

    @property
    def height(self) -> int:
        return int(self.gray.shape[0])


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode in ("RGBA", "LA", "PA") or img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def page_is_color(rgb: np.ndarray) -> bool:
    """True when a page carries real colour, not just a paper tint or a scanner cast.

    Chroma is measured relative to the page's median a*b* (removing a uniform tint); a page is colour when
    more than 3 % of its pixels sit more than 12 units of chroma away from that median.
    """
    from .colorspace import rgb_to_lab

    small = rgb
    step = max(1, int(np.ceil(max(rgb.shape[:2]) / 512)))
    small = rgb[::step, ::step]
    lab = rgb_to_lab(np.ascontiguousarray(small))
    ab = lab[..., 1:].reshape(-1, 2)
    centre = np.median(ab, axis=0)
    chroma = np.linalg.norm(ab - centre, axis=1)
    return bool((chroma > 12.0).mean() > 0.03)


def decode_image(data: bytes, name: str = "image") -> LoadedImage:
    """Decode image bytes into a LoadedImage or raise ImageError with a one-line reason."""
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: file is {len(data) // 2**20} MB, more than the {MAX_FILE_BYTES // 2**20} MB limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the one line below says what matters
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _pil_open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"{name}: {w}x{h} pixels is more than the {MAX_PIXELS // 10**6} MP limit (decompression bomb?)"
                )
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: {_unidentified(data)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image is too large (decompression bomb refused)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{name}: corrupt or truncated image ({reason})") from None
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise ImageError(f"{name}: image is {rgb.shape[1]}x{rgb.shape[0]} pixels, too small to be a page")
    gray = rgb_to_gray(rgb)
    return LoadedImage(rgb=rgb, gray=gray, is_color=page_is_color(rgb))


_SIGNATURES = (
    (b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _unidentified(data: bytes) -> str:
    """Why Pillow could not tell what ``data`` is, in the user's terms."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "corrupt or truncated WebP file (its header cannot be read)"
    for sig, fmt in _SIGNATURES:
        if data.startswith(sig):
            return f"corrupt or truncated {fmt} file (its header cannot be read)"
    if data.startswith(b"%PDF"):
        return "a PDF document, not an image (PDF input is not supported: export its pages as images first)"
    if data.startswith(b"PK\x03\x04"):
        return "a ZIP archive, not an image (name it .cbz or .zip to add the pages inside)"
    return "not an image file (unrecognised format)"


def load_image(path: Path) -> LoadedImage:
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 gray or RGB array as PNG, atomically."""
    if array.dtype != np.uint8:
        raise ValueError("write_png needs uint8 data")
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return Path(path)


def write_image(path: Path, array: np.ndarray, *, quality: int = 92) -> Path:
    """Write PNG/JPEG/WebP by the path's suffix, atomically."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported output format {Path(path).suffix!r}: use .png, .jpg or .webp")
    with atomic_path(path) as tmp:
        kwargs = {} if fmt == "PNG" else {"quality": quality}
        Image.fromarray(array).save(tmp, format=fmt, **kwargs)
    return Path(path)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class InputItem:
    """One page candidate found in the user's inputs: raw bytes plus a display name."""

    name: str
    data: bytes | None = field(repr=False)
    error: str | None = None


def iter_inputs(paths) -> list[InputItem]:
    """Expand files, folders and ZIP/CBZ archives into page candidates, in natural (reading) order.

    Folders and archives contribute files with image suffixes; a path given explicitly is always tried (so a
    text file named .png is reported, not silently skipped). Problems become items with ``error`` set.
    """
    items: list[InputItem] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            items.append(InputItem(str(path), None, f"{path}: no such file or folder"))
        elif path.is_dir():
            files = sorted(
                (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + ARCHIVE_SUFFIXES
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                key=lambda p: _natural_key(str(p.relative_to(path))),
            )
            if not files:
                items.append(InputItem(str(path), None, f"{path}: folder holds no images"))
            items.extend(iter_inputs(files))
        elif path.suffix.lower() in ARCHIVE_SUFFIXES:
            items.extend(_iter_archive(path))
        else:
            try:
                items.append(InputItem(str(path), path.read_bytes()))
            except OSError as exc:
                items.append(InputItem(str(path), None, f"{path}: cannot read ({exc.strerror or exc})"))
    return items


def _iter_archive(path: Path) -> list[InputItem]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [InputItem(str(path), None, f"{path}: not a readable ZIP/CBZ archive ({exc})")]
    items = []
    with zf:
        members = [
            m for m in zf.infolist()
            if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
            and not any((part.startswith(".") and part != "..") or part == "__MACOSX"
                        for part in Path(m.filename).parts)
        ]
        if not members:
            return [InputItem(str(path), None, f"{path}: archive holds no images")]
        for m in sorted(members, key=lambda m: _natural_key(m.filename)):
            name = f"{path}!{m.filename}"
            if ".." in m.filename.replace("\\", "/").split("/"):
                items.append(InputItem(name, None, f"{name}: member path points outside the archive (..); "
                                                   "not taken as a page"))
                continue
            if m.file_size > MAX_FILE_BYTES:
                items.append(InputItem(name, None, f"{name}: {m.file_size // 2**20} MB uncompressed, over the limit"))
                continue
            try:
                items.append(InputItem(name, zf.read(m)))
            except (zipfile.BadZipFile, OSError, EOFError, zlib_error()) as exc:
                items.append(InputItem(name, None, f"{name}: damaged archive member ({exc})"))
            except NotImplementedError as exc:  # a compression method zipfile lacks (PPMd, AES, ...)
                items.append(InputItem(name, None, f"{name}: cannot read archive member ({exc}); "
                                                   "repack the archive with plain ZIP compression"))
            except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required for extraction"
                why = "it is encrypted (password-protected)" if "encrypted" in str(exc) else str(exc)
                items.append(InputItem(name, None, f"{name}: cannot read archive member: {why}; "
                                                   "extract it yourself and add the image"))
    return items


def zlib_error():
    import zlib

    return zlib.error
