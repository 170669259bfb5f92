"""Colour conversions shared by every stage (CIE Lab, D65, sRGB; OpenCV's float conventions).

L* is 0..100, a*/b* roughly -128..127. The pipeline keeps a page's own luminance: ``compose_lab`` turns
(L*, a*b*) back into 8-bit RGB while reducing chroma only where the colour would leave the sRGB gamut, so
the output's L* stays within 1 of the input's.
"""
from __future__ import annotations

import cv2
import numpy as np

_GRAY_TO_L = cv2.cvtColor(
    np.repeat(np.arange(256, dtype=np.float32)[:, None, None] / 255.0, 3, axis=2), cv2.COLOR_RGB2Lab
)[:, 0, 0].astype(np.float32)


def gray_to_L(gray: np.ndarray) -> np.ndarray:
    """uint8 (H, W) gray -> float32 (H, W) L* in 0..100."""
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError("gray_to_L needs a uint8 (H, W) array")
    return _GRAY_TO_L[gray]


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (H, W, 3) Lab."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("rgb_to_lab needs a uint8 (H, W, 3) array")
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> uint8 gray whose L* matches the colour's L* (not the Rec.601 luma)."""
    L = rgb_to_lab(rgb)[..., 0]
    return L_to_gray(L)


def L_to_gray(L: np.ndarray) -> np.ndarray:
    """float L* -> the uint8 gray level with the nearest L*."""
    idx = np.searchsorted(_GRAY_TO_L, L.astype(np.float32))
    idx = np.clip(idx, 1, 255)
    lower = _GRAY_TO_L[idx - 1]
    upper = _GRAY_TO_L[idx]
    pick = np.where(np.abs(L - lower) <= np.abs(upper - L), idx - 1, idx)
    return pick.astype(np.uint8)


def lab_to_rgb_float(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)


def compose_lab(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """float32 L* (H, W) + a*b* (H, W, 2) -> uint8 RGB (H, W, 3) with the same L*.

    Colours outside the sRGB gamut keep their hue and L* and lose chroma (bisection on a chroma scale),
    instead of being clipped per channel, which would change their lightness.
    """
    L = L.astype(np.float32)
    ab = ab.astype(np.float32)
    lab = np.dstack([L, ab])
    rgb = lab_to_rgb_float(lab)
    bad = ((rgb < -1e-4) | (rgb > 1 + 1e-4)).any(axis=2)
    if bad.any():
        ys, xs = np.nonzero(bad)
        Ls = L[ys, xs]
        abs_ = ab[ys, xs]
        lo = np.zeros(len(ys), np.float32)
        hi = np.ones(len(ys), np.float32)
        for _ in range(10):
            mid = (lo + hi) / 2
            trial = np.dstack([Ls[None], (abs_ * mid[:, None])[None]])[0]
            t = lab_to_rgb_float(trial[None])[0]
            ok = ((t >= -1e-4) & (t <= 1 + 1e-4)).all(axis=1)
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
        final = np.column_stack([Ls, abs_ * lo[:, None]])
        rgb[ys, xs] = lab_to_rgb_float(final[None])[0]
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


def rgb_to_ab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """One RGB colour -> (L*, a*, b*)."""
    lab = rgb_to_lab(np.array([[rgb]], dtype=np.uint8))[0, 0]
    return float(lab[0]), float(lab[1]), float(lab[2])
