"""Colorize one panel: B/W crop + per-character references + hints -> a*b* at working resolution."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from colorizer.conditioning import build_inputs, collate, pad_to_multiple, resize_mask, working_shape
from colorizer.model import AB_SCALE, ColorizerConfig, build_colorizer
from colorizer.reference import ReferenceFeatures
from manga_pipeline.colorspace import gray_to_L, rgb_to_ab
import weights as weights_registry

UNTRAINED_SEED = 0
# A hint always wins around its point: besides the network's hint channels, its colour is blended in over a
# Gaussian of this many working pixels, fading where the lightness differs (another region across a line).
HINT_SIGMA_FRACTION = 0.025
HINT_L_SIGMA = 12.0
# Palette anchoring (cross-page consistency): inside a character's region every pixel the network coloured takes
# the nearest colour of that character's reference palette, so the same character gets the same colours on
# every page. "Nearest" weighs a*b* distance plus ANCHOR_L_WEIGHT x the lightness gap between the palette colour
# and the B/W pixel (averaged over the working pixel, which descreens tones): white paper prefers light colours
# (skin, pale hair), tones mid and dark ones. Chosen on the tuning chapter (synthetic seed 905001) over 0.5/1.5/3
# (config colorize.anchor_l_weight; BENCHMARKS.md has the commands).
ANCHOR_L_WEIGHT = 1.5
ANCHOR_MIN_CHROMA = 3.0  # below this the network left a pixel uncoloured: anchoring leaves it so
# "network": the colorizer network's a*b*; "prior": no network at all, each referenced region takes its
# reference's lightness-table chroma at the pixel's lightness (``conditioning.lightness_prior``), the no-learning
# baseline the network is measured against (BENCHMARKS.md)
TRANSFERS = ("network", "prior")


def state_to_file(model: torch.nn.Module, cfg: ColorizerConfig, *, half: bool = True) -> dict:
    """What a weights file holds: the model config and the state dict (fp16 unless ``half`` is False)."""
    sd = {k: (v.detach().to(torch.float16) if half and v.is_floating_point() else v.detach()).cpu().contiguous()
          for k, v in model.state_dict().items()}
    return {"format": "manga-color-colorizer-v1", "config": cfg.to_dict(), "state_dict": sd}


def model_from_file(blob: dict) -> tuple[torch.nn.Module, ColorizerConfig]:
    if not isinstance(blob, dict) or blob.get("format") != "manga-color-colorizer-v1":
        raise weights_registry.WeightsError("not a colorizer weights file (format tag missing or unknown)")
    cfg = ColorizerConfig.from_dict(blob["config"])
    model = build_colorizer(cfg)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.eval(), cfg


class Colorizer:
    """A loaded colorizer network. ``trained`` is False for the seeded untrained fallback."""

    def __init__(self, model: torch.nn.Module, cfg: ColorizerConfig, *, trained: bool, weights_id: str):
        self.model = model.eval()
        self.cfg = cfg
        self.trained = trained
        self.weights_id = weights_id

    @classmethod
    def untrained(cls, cfg: ColorizerConfig = ColorizerConfig()) -> "Colorizer":
        with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random state
            torch.manual_seed(UNTRAINED_SEED)
            model = build_colorizer(cfg)
        return cls(model, cfg, trained=False, weights_id="untrained")

    @classmethod
    def load(cls, tag: str | None = None, *, manifest: Path | None = None) -> "Colorizer":
        """Weights ``tag`` ("synthetic-v1" or "colorizer.synthetic-v1"); None = the shipped default, and when the
        project ships none, a seeded untrained network (``trained`` False, ``weights_id`` "untrained")."""
        manifest = Path(manifest) if manifest is not None else weights_registry.MANIFEST
        if tag is None:
            tag = weights_registry.default_tag("colorizer", manifest)
            if tag is None:
                return cls.untrained()
        name_tag = tag if tag.startswith("colorizer.") else f"colorizer.{tag}"
        spec = weights_registry.get_spec(name_tag, manifest)
        model, cfg = model_from_file(weights_registry.load_state(name_tag, manifest))
        return cls(model, cfg, trained=True, weights_id=spec.short)

    def working_shape(self, h: int, w: int) -> tuple[int, int]:
        return working_shape(h, w, self.cfg.size)

    @torch.no_grad()
    def colorize_panel(self, gray: np.ndarray, *, regions: Sequence[tuple[np.ndarray, ReferenceFeatures]] = (),
                       scene: ReferenceFeatures | None = None,
                       hints: Sequence[tuple[int, int, tuple[int, int, int]]] = (),
                       anchor: bool = False, anchor_l_weight: float = ANCHOR_L_WEIGHT,
                       transfer: str = "network") -> np.ndarray:
        """a*b* float32 (h', w', 2) for a uint8 (h, w) panel crop, at working resolution (long side cfg.size).

        regions: (bool mask (h, w) in crop pixels, that character's reference); hints: (x, y, RGB) in crop pixels.
        anchor: snap the colours inside each region to its reference palette (see ``anchor_to_palette``); hints
        are applied after it and still win locally. anchor_l_weight: see ``ANCHOR_L_WEIGHT``.
        transfer: "network" or "prior" (see ``TRANSFERS``); with "prior" a reference without a lightness table is
        an error, since that region would silently stay gray.
        """
        if transfer not in TRANSFERS:
            raise ValueError(f"transfer must be one of {TRANSFERS}, got {transfer!r}")
        gray = np.asarray(gray)
        if gray.dtype != np.uint8 or gray.ndim != 2 or min(gray.shape) < 1:
            raise ValueError(f"colorize_panel needs a uint8 (h, w) panel, got {gray.dtype} {gray.shape}")
        h, w = gray.shape
        hh, ww = self.working_shape(h, w)
        import cv2

        small = cv2.resize(gray, (ww, hh), interpolation=cv2.INTER_AREA)
        masks, refs = [], []
        for mask, ref in regions:
            mask = np.asarray(mask)
            if mask.shape != (h, w) or mask.dtype != np.bool_:
                raise ValueError(f"region masks must be bool arrays of the panel's shape {(h, w)}, "
                                 f"got {mask.dtype} {mask.shape}")
            masks.append(resize_mask(mask, (hh, ww)))
            refs.append(ref)
        sx, sy = ww / w, hh / h
        pts = []
        for x, y, rgb in hints:
            _, a, b = rgb_to_ab(tuple(int(c) for c in rgb))
            pts.append((min(ww - 1, int(x * sx)), min(hh - 1, int(y * sy)), a, b))
        inp = build_inputs(small, region_masks=masks, region_refs=refs, scene=scene, hints=pts)
        if transfer == "prior":
            if any(r is not None and r.l_table is None for r in (scene, *refs)):
                raise ValueError("transfer 'prior' needs references with a lightness table (re-extract them)")
            ab = inp.prior[:2].transpose(1, 2, 0) * AB_SCALE
        else:
            ab = self.model(*collate([pad_to_multiple(inp)]))[0, :, :hh, :ww].permute(1, 2, 0).numpy()
        ab = ab.astype(np.float32)
        if anchor and masks:
            ab = anchor_to_palette(ab, gray_to_L(small), masks, refs, l_weight=anchor_l_weight)
        if pts:
            ab = _blend_hints(ab, gray_to_L(small), pts)
        return np.ascontiguousarray(ab, dtype=np.float32)


def anchor_to_palette(ab: np.ndarray, L: np.ndarray, masks: Sequence[np.ndarray],
                      refs: Sequence[ReferenceFeatures], *, l_weight: float = ANCHOR_L_WEIGHT) -> np.ndarray:
    """Snap the coloured pixels of each region to its palette: ab float32 (h, w, 2), L float32 (h, w) the B/W
    L* at the same resolution, masks bool (h, w) per region (a smaller region overlapping a bigger one wins, as
    in the network's region map). Returns a new array."""
    out = ab.copy()
    chroma = np.hypot(ab[..., 0], ab[..., 1])
    for i in sorted(range(len(masks)), key=lambda k: -int(masks[k].sum())):
        pal = refs[i].palette[refs[i].weights > 0]
        sel = masks[i] & (chroma > ANCHOR_MIN_CHROMA)
        if not sel.any() or not len(pal):
            continue
        a, L_pix = ab[sel], L[sel]
        cost = np.hypot(a[:, None, 0] - pal[None, :, 1], a[:, None, 1] - pal[None, :, 2]) \
            + l_weight * np.abs(L_pix[:, None] - pal[None, :, 0])
        out[sel] = pal[cost.argmin(1)][:, 1:]
    return out


def _blend_hints(ab: np.ndarray, L: np.ndarray, pts) -> np.ndarray:
    hh, ww = L.shape
    sigma = max(2.0, HINT_SIGMA_FRACTION * max(hh, ww))
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    out = ab.copy()
    for x, y, a, b in pts:
        wgt = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
        wgt *= np.exp(-((L - L[y, x]) ** 2) / (2 * HINT_L_SIGMA ** 2))
        wgt = wgt[..., None].astype(np.float32)
        out = out * (1 - wgt) + np.array([a, b], np.float32) * wgt
    return out
