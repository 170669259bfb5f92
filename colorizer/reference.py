"""Reference features: what the colorizer is told about a character's (or a scene's) colours.

A reference is an RGB image of the character, on a plain background or not. From it we keep
- a palette: ``k`` Lab colours found by area-weighted k-means over the foreground, most area first;
- a 6x6x6 RGB histogram of the foreground (Comicolorization's reference feature);
- a lightness table (``l_table``): per L* bin the foreground's mean a*, mean b* and pixel fraction, the
  reference side of a Welsh-style transfer (a B/W pixel of lightness L takes the chroma the reference has at L),
  which ``colorizer.conditioning`` turns into per-pixel prior channels.

The background (near-white or uniform, connected to the image border) and the black line art are ignored: a
character drawn on white must not get "white" as its main colour. ``vector()`` packs both into a fixed-length
float32 vector, the conditioning that the network's reference branch reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from manga_pipeline.colorspace import rgb_to_lab

PALETTE_SLOTS = 6  # palette entries that enter vector(); a longer palette is cut, a shorter one padded
HIST_BINS = 6
VECTOR_DIM = PALETTE_SLOTS * 4 + HIST_BINS ** 3  # (L, a, b, weight) per slot + histogram = 240

_MAX_SIDE = 256  # references are analysed at most this big (nearest-neighbour: keeps flat colours pure)
_MAX_SAMPLES = 6000  # pixels fed to k-means
_LINE_L = 22.0  # L* below this (and nearly neutral) counts as line art / ink
_WHITE_L = 93.0  # near-white: L* above this and chroma below _WHITE_C
_WHITE_C = 6.0
_BG_DE = 6.0  # a border-connected pixel within this Lab distance of the border colour is background
L_BINS = 20  # lightness table bins of 100 / L_BINS L* each


@dataclass(frozen=True)
class ReferenceFeatures:
    """Colour description of one reference image.

    palette: float32 (K, 3) Lab colours (L* 0..100), most area first; unused slots are zeros with weight 0.
    weights: float32 (K,) area fractions of the palette colours, summing to 1.
    histogram: float32 (216,) 6x6x6 RGB histogram of the foreground (index r*36 + g*6 + b), summing to 1.
    l_table: float32 (L_BINS, 3) or None: per L* bin i (L* in [i, i+1) * 100 / L_BINS) the foreground's mean a*,
        mean b* and pixel fraction (the fractions sum to 1; an empty bin is (0, 0, 0)). None for a record written
        before the table existed: the colorizer then has no lightness prior for that reference.
    """

    palette: np.ndarray
    weights: np.ndarray
    histogram: np.ndarray
    l_table: np.ndarray | None = None

    def __post_init__(self):
        pal = np.asarray(self.palette, dtype=np.float32)
        w = np.asarray(self.weights, dtype=np.float32)
        h = np.asarray(self.histogram, dtype=np.float32)
        if pal.ndim != 2 or pal.shape[1] != 3 or pal.shape[0] < 1:
            raise ValueError(f"palette must be (K, 3) Lab, got shape {pal.shape}")
        if w.shape != (pal.shape[0],):
            raise ValueError(f"weights must be ({pal.shape[0]},), got shape {w.shape}")
        if h.shape != (HIST_BINS ** 3,):
            raise ValueError(f"histogram must be ({HIST_BINS ** 3},), got shape {h.shape}")
        for name, arr in (("palette", pal), ("weights", w), ("histogram", h)):
            if not np.isfinite(arr).all():
                raise ValueError(f"reference {name} contains NaN or infinite values")
        if (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-3:
            raise ValueError(f"palette weights must be >= 0 and sum to 1, got sum {float(w.sum()):.4f}")
        if (h < 0).any() or abs(float(h.sum()) - 1.0) > 1e-3:
            raise ValueError(f"histogram must be >= 0 and sum to 1, got sum {float(h.sum()):.4f}")
        arrays = [("palette", pal), ("weights", w), ("histogram", h)]
        if self.l_table is not None:
            t = np.asarray(self.l_table, dtype=np.float32)
            if t.shape != (L_BINS, 3):
                raise ValueError(f"l_table must be ({L_BINS}, 3), got shape {t.shape}")
            if not np.isfinite(t).all():
                raise ValueError("reference l_table contains NaN or infinite values")
            if (t[:, 2] < 0).any() or abs(float(t[:, 2].sum()) - 1.0) > 1e-3:
                raise ValueError(f"l_table fractions must be >= 0 and sum to 1, got sum {float(t[:, 2].sum()):.4f}")
            arrays.append(("l_table", t))
        for name, arr in arrays:
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def k(self) -> int:
        return int(self.palette.shape[0])

    def vector(self) -> np.ndarray:
        """float32 (VECTOR_DIM,) = per slot (L/100, a/100, b/100, weight) then sqrt(histogram).

        The square root spreads the histogram's small bins (a hair colour covering 5 % matters).
        """
        pal = np.zeros((PALETTE_SLOTS, 3), np.float32)
        w = np.zeros(PALETTE_SLOTS, np.float32)
        n = min(PALETTE_SLOTS, self.k)
        pal[:n] = self.palette[:n]
        w[:n] = self.weights[:n]
        slots = np.column_stack([pal[:, :1] / 100.0, pal[:, 1:] / 100.0, w[:, None]]).reshape(-1)
        return np.concatenate([slots, np.sqrt(self.histogram)]).astype(np.float32)

    def to_json(self) -> dict:
        d = {
            "palette": [[round(float(v), 3) for v in row] for row in self.palette],
            "weights": [round(float(v), 6) for v in self.weights],
            "histogram": [round(float(v), 6) for v in self.histogram],
        }
        if self.l_table is not None:
            d["l_table"] = [[round(float(a), 3), round(float(b), 3), round(float(f), 6)] for a, b, f in self.l_table]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ReferenceFeatures":
        try:
            pal = np.asarray(d["palette"], dtype=np.float32).reshape(-1, 3)
            w = np.asarray(d["weights"], dtype=np.float32)
            h = np.asarray(d["histogram"], dtype=np.float32)
            t = None if d.get("l_table") is None else np.asarray(d["l_table"], dtype=np.float32).reshape(-1, 3)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a reference-features record: {exc}") from exc
        # rounding in to_json may leave the sums a hair off 1
        if t is not None:
            t = t.copy()
            t[:, 2] /= max(float(t[:, 2].sum()), 1e-12)
        return cls(pal, w / max(float(w.sum()), 1e-12), h / max(float(h.sum()), 1e-12), t)

    @classmethod
    def neutral(cls, k: int = PALETTE_SLOTS) -> "ReferenceFeatures":
        """A reference that says nothing: one mid-gray slot, flat histogram."""
        pal = np.zeros((k, 3), np.float32)
        pal[0, 0] = 50.0
        w = np.zeros(k, np.float32)
        w[0] = 1.0
        return cls(pal, w, np.full(HIST_BINS ** 3, 1.0 / HIST_BINS ** 3, np.float32))


def lightness_table(lab: np.ndarray) -> np.ndarray:
    """float32 (L_BINS, 3) (mean a*, mean b*, pixel fraction) per L* bin of float (N, 3) Lab pixels (N >= 1)."""
    lab = np.asarray(lab, np.float64).reshape(-1, 3)
    if not len(lab):
        raise ValueError("lightness_table needs at least one pixel")
    idx = np.clip((lab[:, 0] * (L_BINS / 100.0)).astype(np.int64), 0, L_BINS - 1)
    n = np.bincount(idx, minlength=L_BINS).astype(np.float64)
    a = np.bincount(idx, weights=lab[:, 1], minlength=L_BINS)
    b = np.bincount(idx, weights=lab[:, 2], minlength=L_BINS)
    safe = np.maximum(n, 1.0)
    return np.column_stack([a / safe, b / safe, n / n.sum()]).astype(np.float32)


def _resize_max(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_NEAREST)


def foreground_mask(rgb: np.ndarray, lab: np.ndarray | None = None) -> np.ndarray:
    """bool (H, W): pixels that are neither border-connected background nor line art.

    Background = pixels connected to the image border that are near-white, or close to the border's median
    colour (a uniform backdrop of any colour).
    """
    if lab is None:
        lab = rgb_to_lab(rgb)
    h, w = lab.shape[:2]
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    bg_col = np.median(border, axis=0)
    near_bg = np.linalg.norm(lab - bg_col, axis=2) < _BG_DE
    near_white = (lab[..., 0] > _WHITE_L) & (chroma < _WHITE_C)
    cand = (near_bg | near_white).astype(np.uint8)
    n, labels = cv2.connectedComponents(cand, connectivity=4)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge_labels = edge_labels[edge_labels > 0]
    background = np.isin(labels, edge_labels) & (cand > 0)
    line = (lab[..., 0] < _LINE_L) & (chroma < 12.0)
    return ~background & ~line


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Plain k-means with k-means++ seeding; returns (centres (k', 3), labels); k' <= k distinct centres."""
    n = len(x)
    k = min(k, n)
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        if d2.sum() <= 1e-9:
            break
        centres.append(x[rng.choice(n, p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = np.array(centres, dtype=np.float64)
    labels = np.zeros(n, np.int64)
    for _ in range(iters):
        dist = ((x[:, None, :] - c[None]) ** 2).sum(2)
        labels = dist.argmin(1)
        new = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(len(c))])
        if np.allclose(new, c, atol=1e-3):
            c = new
            break
        c = new
    return c, labels


def extract_reference(rgb: np.ndarray, *, k: int = PALETTE_SLOTS, remove_background: bool = True,
                      seed: int = 0) -> ReferenceFeatures:
    """Reference features of a uint8 (H, W, 3) RGB image of any size.

    remove_background: drop the border-connected near-white / uniform background (a character sheet);
    set False for a scene reference where the whole image counts. Line art (dark, neutral) is always ignored.
    The palette is area-weighted k-means in Lab, so a colour's weight is the fraction of the foreground it
    covers; close clusters (ΔE < 4) are merged. The lightness table is over every foreground pixel.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"extract_reference needs a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    small = _resize_max(rgb, _MAX_SIDE)
    lab = rgb_to_lab(small)
    if remove_background:
        fg = foreground_mask(small, lab)
    else:
        chroma = np.hypot(lab[..., 1], lab[..., 2])
        fg = ~((lab[..., 0] < _LINE_L) & (chroma < 12.0))
    if fg.sum() < 16:  # nothing left (an all-white or all-ink image): use every pixel
        fg = np.ones(lab.shape[:2], bool)

    px_rgb = small[fg]
    q = (px_rgb.astype(np.int64) * HIST_BINS) // 256
    idx = q[:, 0] * HIST_BINS * HIST_BINS + q[:, 1] * HIST_BINS + q[:, 2]
    hist = np.bincount(idx, minlength=HIST_BINS ** 3).astype(np.float64)
    hist /= hist.sum()

    rng = np.random.default_rng(seed)
    px = lab[fg].astype(np.float64)
    if len(px) > _MAX_SAMPLES:
        px = px[rng.choice(len(px), _MAX_SAMPLES, replace=False)]
    centres, labels = _kmeans(px, k, rng)
    counts = np.bincount(labels, minlength=len(centres)).astype(np.float64)
    # merge near-duplicate clusters (k-means splits one big flat colour into several)
    order = np.argsort(-counts)
    merged_c: list[np.ndarray] = []
    merged_n: list[float] = []
    for j in order:
        if counts[j] == 0:
            continue
        for m, c in enumerate(merged_c):
            if np.linalg.norm(c - centres[j]) < 4.0:
                tot = merged_n[m] + counts[j]
                merged_c[m] = (c * merged_n[m] + centres[j] * counts[j]) / tot
                merged_n[m] = tot
                break
        else:
            merged_c.append(centres[j].copy())
            merged_n.append(float(counts[j]))
    order = np.argsort(-np.array(merged_n), kind="stable")
    palette = np.zeros((k, 3), np.float32)
    weights = np.zeros(k, np.float32)
    for i, j in enumerate(order[:k]):
        palette[i] = merged_c[j]
        weights[i] = merged_n[j]
    weights /= weights.sum()
    return ReferenceFeatures(palette, weights, hist.astype(np.float32), lightness_table(lab[fg]))
