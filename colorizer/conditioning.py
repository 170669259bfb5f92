"""Turn a panel and what we know about it into the network's input arrays.

Training (``colorizer.data``) and inference (``colorizer.infer``) both go through ``build_inputs`` so that the
two can never drift apart (hint size, region painting order, normalisation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from colorizer.reference import L_BINS, VECTOR_DIM, ReferenceFeatures
from manga_pipeline.colorspace import gray_to_L

HINT_RADIUS = 1  # a hint is a (2r+1)^2 square at working resolution
# The lightness prior reads a pixel's *local* lightness: the working-resolution gray is already area-averaged
# (screentone dots become their mean tone); this blur evens out what is left of a coarse tone.
PRIOR_BLUR_SIGMA = 0.8
PRIOR_CHANNELS = 3


@dataclass(frozen=True)
class NetInputs:
    """One sample's network inputs at working resolution (h, w), unpadded; see ``colorizer.model``."""

    L: np.ndarray  # float32 (1, h, w): L*/50 - 1
    hints: np.ndarray  # float32 (3, h, w): a*/100, b*/100, mask
    region_ids: np.ndarray  # int64 (h, w): 0 scene, r in 1..R character region r
    refs: np.ndarray  # float32 (R+1, D)
    has_ref: np.ndarray  # float32 (R+1,)
    prior: np.ndarray  # float32 (3, h, w): lightness-prior a*/100, b*/100, confidence (see ``lightness_prior``)


def working_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(h', w') with the long side ``size`` and the aspect kept."""
    s = size / max(h, w)
    return max(8, int(round(h * s))), max(8, int(round(w * s)))


def paint_regions(shape: tuple[int, int], masks: Sequence[np.ndarray]) -> np.ndarray:
    """int64 (h, w) region ids from bool masks already at ``shape``; bigger regions first, so a small character
    overlapping a big one keeps its own pixels."""
    ids = np.zeros(shape, np.int64)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for i in order:
        ids[masks[i]] = i + 1
    return ids


def paint_hints(shape: tuple[int, int], points: Sequence[tuple[int, int, float, float]]) -> np.ndarray:
    """float32 (3, h, w) from (x, y, a*, b*) points in working pixels."""
    h, w = shape
    out = np.zeros((3, h, w), np.float32)
    r = HINT_RADIUS
    for x, y, a, b in points:
        x, y = int(round(x)), int(round(y))
        if not (0 <= x < w and 0 <= y < h):
            continue
        ys, xs = slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1)
        out[0, ys, xs] = a / 100.0
        out[1, ys, xs] = b / 100.0
        out[2, ys, xs] = 1.0
    return out


def build_inputs(gray: np.ndarray, *, region_masks: Sequence[np.ndarray] = (),
                 region_refs: Sequence[ReferenceFeatures | None] = (), scene: ReferenceFeatures | None = None,
                 hints: Sequence[tuple[int, int, float, float]] = ()) -> NetInputs:
    """Inputs for a gray uint8 (h, w) image already at working resolution; masks bool (h, w) in the same pixels;
    hints (x, y, a*, b*) in the same pixels. A region whose reference is None still gets its own id (so the net
    knows a character is there) but no reference."""
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"gray must be uint8 (h, w), got {gray.dtype} {gray.shape}")
    if len(region_masks) != len(region_refs):
        raise ValueError("need one reference (or None) per region mask")
    shape = gray.shape
    for m in region_masks:
        if m.shape != shape or m.dtype != np.bool_:
            raise ValueError(f"region masks must be bool {shape}, got {m.dtype} {m.shape}")
    return build_inputs_from_ids(gray, paint_regions(shape, region_masks), region_refs, scene, hints)


def build_inputs_from_ids(gray: np.ndarray, region_ids: np.ndarray, region_refs: Sequence[ReferenceFeatures | None],
                          scene: ReferenceFeatures | None, hints: Sequence[tuple[int, int, float, float]]) -> NetInputs:
    """Like ``build_inputs`` with the regions already painted: int (h, w) ids, 0 scene, r -> region_refs[r-1]."""
    if region_ids.shape != gray.shape:
        raise ValueError(f"region ids {region_ids.shape} do not match the image {gray.shape}")
    R = len(region_refs)
    if region_ids.size and int(region_ids.max()) > R:
        raise ValueError(f"region id {int(region_ids.max())} has no reference row (only {R} regions)")
    L = (gray_to_L(gray) / 50.0 - 1.0)[None].astype(np.float32)
    refs = np.zeros((R + 1, VECTOR_DIM), np.float32)
    has = np.zeros(R + 1, np.float32)
    for i, ref in enumerate([scene, *region_refs]):
        if ref is not None:
            refs[i] = ref.vector()
            has[i] = 1.0
    prior = lightness_prior(gray, region_ids, [scene, *region_refs])
    return NetInputs(L, paint_hints(gray.shape, hints), region_ids.astype(np.int64), refs, has, prior)


def local_lightness(gray: np.ndarray) -> np.ndarray:
    """float32 (h, w) L* of a working-resolution uint8 gray, lightly blurred (see ``PRIOR_BLUR_SIGMA``)."""
    return cv2.GaussianBlur(gray_to_L(gray), (0, 0), PRIOR_BLUR_SIGMA)


def _bin_centres() -> np.ndarray:
    return (np.arange(L_BINS, dtype=np.float32) + 0.5) * (100.0 / L_BINS)


def table_lookup(table: np.ndarray, L: np.ndarray) -> np.ndarray:
    """float32 (..., 3) = (a*, b*, confidence) of a (L_BINS, 3) lightness table at L* values ``L`` (any shape).

    a*, b*: linear between bin centres; an empty bin takes the line between its nearest populated bins, and
    beyond the first / last populated bin the nearest one holds. confidence: the bin fractions interpolated the
    same way but with empty bins left at 0, divided by the table's largest fraction (1 at the reference's
    commonest lightness, 0 at a lightness the reference does not have).
    """
    table = np.asarray(table, np.float32)
    if table.shape != (L_BINS, 3):
        raise ValueError(f"lightness table must be ({L_BINS}, 3), got {table.shape}")
    c = _bin_centres()
    full = table[:, 2] > 0
    if not full.any():
        raise ValueError("lightness table has no populated bin")
    a = np.interp(L, c[full], table[full, 0])
    b = np.interp(L, c[full], table[full, 1])
    conf = np.interp(L, c, table[:, 2] / table[:, 2].max())
    return np.stack([a, b, conf], -1).astype(np.float32)


def lightness_prior(gray: np.ndarray, region_ids: np.ndarray,
                    refs: Sequence[ReferenceFeatures | None]) -> np.ndarray:
    """float32 (3, h, w): in each pixel of region r (0 = the scene) whose reference ``refs[r]`` has a lightness
    table, that table looked up at the pixel's local lightness: a*/100, b*/100, confidence (``table_lookup``).
    Zero (no prior) wherever the region has no reference or its reference has no table."""
    out = np.zeros((PRIOR_CHANNELS, *gray.shape), np.float32)
    if not any(r is not None and r.l_table is not None for r in refs):
        return out
    L = local_lightness(gray)
    for r, ref in enumerate(refs):
        if ref is None or ref.l_table is None:
            continue
        sel = region_ids == r
        if not sel.any():
            continue
        v = table_lookup(ref.l_table, L[sel])
        out[0][sel] = v[:, 0] / 100.0
        out[1][sel] = v[:, 1] / 100.0
        out[2][sel] = v[:, 2]
    return out


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool mask -> bool mask at (h, w): a working pixel is inside when at least half of it is."""
    h, w = shape
    m = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return m >= 0.5


def pad_to_multiple(inp: NetInputs, multiple: int = 8) -> NetInputs:
    """Pad on the right and bottom (edge-replicated L, empty hints, scene region) to a multiple of 8."""
    h, w = inp.region_ids.shape
    H, W = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (H, W) == (h, w):
        return inp
    ph, pw = H - h, W - w
    return NetInputs(
        np.pad(inp.L, ((0, 0), (0, ph), (0, pw)), mode="edge"),
        np.pad(inp.hints, ((0, 0), (0, ph), (0, pw))),
        np.pad(inp.region_ids, ((0, ph), (0, pw))),
        inp.refs,
        inp.has_ref,
        np.pad(inp.prior, ((0, 0), (0, ph), (0, pw))),
    )


def collate(batch: Sequence[NetInputs]):
    """Stack same-size samples into torch tensors, padding the reference rows to the largest R:
    (L, hints, region_ids, refs, has_ref, prior), the colorizer's forward arguments in order."""
    import torch

    R = max(len(b.has_ref) for b in batch)
    refs = np.zeros((len(batch), R, VECTOR_DIM), np.float32)
    has = np.zeros((len(batch), R), np.float32)
    for i, b in enumerate(batch):
        refs[i, : len(b.has_ref)] = b.refs
        has[i, : len(b.has_ref)] = b.has_ref
    return (
        torch.from_numpy(np.stack([b.L for b in batch])),
        torch.from_numpy(np.stack([b.hints for b in batch])),
        torch.from_numpy(np.stack([b.region_ids for b in batch])),
        torch.from_numpy(refs),
        torch.from_numpy(has),
        torch.from_numpy(np.stack([b.prior for b in batch])),
    )
