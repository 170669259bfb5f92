"""Validation of a colorizer network on held-out panels: CIEDE2000 against the truth, next to a gray output.

Both the prediction and the gray output (a*b* = 0) are combined with the *true* L*, so the figure measures chroma
only (the pipeline keeps the page's own luminance). Means are per panel, then over panels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from colorizer.conditioning import build_inputs_from_ids, collate, pad_to_multiple
from colorizer.metrics import delta_e2000


@torch.no_grad()
def predict_sample(model: torch.nn.Module, s, *, use_refs: bool = True) -> np.ndarray:
    """float32 (h, w, 2) a*b* for a ``PanelSample`` at its own (working) resolution, no hints."""
    h, w = s.gray.shape
    refs = list(s.refs) if use_refs else [None] * len(s.refs)
    inp = build_inputs_from_ids(s.gray, s.region_ids.astype(np.int64), refs, s.scene if use_refs else None, [])
    out = model(*collate([pad_to_multiple(inp)]))
    return out[0, :, :h, :w].permute(1, 2, 0).numpy().astype(np.float32)


def evaluate(model: torch.nn.Module, samples: Sequence, *, use_refs: bool = True) -> dict:
    """{"n", "de2000", "de2000_gray", "ratio", "de2000_regions", "de2000_regions_gray", "chroma", "chroma_true"}."""
    model.eval()
    de, de_gray, de_reg, de_reg_gray, chroma, chroma_true = [], [], [], [], [], []
    for s in samples:
        ab = predict_sample(model, s, use_refs=use_refs)
        L = s.L.astype(np.float32)[..., None]
        truth = np.concatenate([L, s.ab.astype(np.float32)], 2)
        pred = np.concatenate([L, ab], 2)
        gray = np.concatenate([L, np.zeros_like(ab)], 2)
        d, dg = delta_e2000(pred, truth), delta_e2000(gray, truth)
        de.append(float(d.mean()))
        de_gray.append(float(dg.mean()))
        inside = s.region_ids > 0
        if inside.any():
            de_reg.append(float(d[inside].mean()))
            de_reg_gray.append(float(dg[inside].mean()))
        chroma.append(float(np.hypot(ab[..., 0], ab[..., 1]).mean()))
        chroma_true.append(float(np.hypot(*s.ab.astype(np.float32).transpose(2, 0, 1)).mean()))
    if not de:
        return {"n": 0}
    out = {
        "n": len(de),
        "de2000": round(float(np.mean(de)), 3),
        "de2000_gray": round(float(np.mean(de_gray)), 3),
        "ratio": round(float(np.mean(de) / max(np.mean(de_gray), 1e-9)), 3),
        "chroma": round(float(np.mean(chroma)), 2),
        "chroma_true": round(float(np.mean(chroma_true)), 2),
    }
    if de_reg:
        out["de2000_regions"] = round(float(np.mean(de_reg)), 3)
        out["de2000_regions_gray"] = round(float(np.mean(de_reg_gray)), 3)
    return out
