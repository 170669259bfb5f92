"""Character identification, first version: tone descriptors matched against the character bank.

A descriptor summarises how a figure looks in B/W: the distribution of its (blurred, so screentone dots read as
gray levels) tones overall and in its top part (mostly hair). A colour reference is turned to gray first, so a
reference and a B/W appearance of the same character land near each other. Matching is cosine similarity with
a threshold and a margin over the runner-up: below either, the character stays unknown (never forced onto a
name). Within a panel a name is used at most once (best matches first).

Issue 4 replaces the descriptor with a trained embedding; the ``Identifier`` interface stays.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from manga_pipeline.colorspace import rgb_to_gray
from manga_pipeline.records import CharacterInstance, PageDetections

# Coarse tone classes survive the trip from colour to print: dark colours become black, mid colours
# screentone (mid gray once blurred), light colours white. Fine gray levels do not.
TONE_EDGES = (0, 40, 85, 130, 175, 215, 246)
DESCRIPTOR_BINS = len(TONE_EDGES) - 1
REGIONS = 3  # whole figure, top band (hair), the rest
DESCRIPTOR_DIM = REGIONS * DESCRIPTOR_BINS
PRINT_BLACK, PRINT_WHITE = 110, 200


def _foreground_from_white(gray: np.ndarray) -> np.ndarray:
    """Pixels not connected to the border through near-white paper (the figure of a reference on white)."""
    paper = (gray >= 235).astype(np.uint8)
    _, labels = cv2.connectedComponents(paper, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border != 0])
    return ~background


def describe(gray: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Descriptor of a B/W figure crop: uint8 (h, w) [+ bool mask (h, w)] -> float32 (DESCRIPTOR_DIM,), unit norm."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError("describe needs a uint8 (h, w) crop")
    h, w = gray.shape
    scale = 64.0 / max(h, w)
    size = (max(4, int(round(w * scale))), max(4, int(round(h * scale))))
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 1.0)
    if mask is None:
        fg = np.ones(small.shape, bool)
    else:
        fg = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    fg &= small < TONE_EDGES[-1]  # paper inside the figure carries no identity
    rows = np.nonzero(fg.any(axis=1))[0]
    top = np.zeros_like(fg)
    if len(rows):
        top[rows[0]: rows[0] + max(1, int(0.2 * (rows[-1] - rows[0] + 1)))] = True
    parts = []
    for region in (fg, fg & top, fg & ~top):
        hist = np.histogram(small[region], bins=TONE_EDGES)[0].astype(np.float32)
        parts.append(np.sqrt(hist / hist.sum()) if hist.sum() > 0 else hist)
    vec = np.concatenate(parts)
    norm = np.linalg.norm(vec)
    return (vec / norm if norm > 0 else vec).astype(np.float32)


def describe_reference(rgb: np.ndarray) -> np.ndarray:
    """Descriptors (float32 (1, D)) of a colour reference image, figure separated from a white background."""
    gray = rgb_to_gray(rgb)
    return describe(gray, _foreground_from_white(gray))[None]


def describe_sample(gray: np.ndarray) -> np.ndarray:
    """Descriptors (float32 (1, D)) of a B/W sample crop of the character taken from the manga itself."""
    return describe(gray, _foreground_from_white(gray))[None]


@dataclass(frozen=True)
class IdentifierConfig:
    threshold: float = 0.80  # minimum cosine similarity to name a character
    margin: float = 0.03     # minimum lead of the best name over the runner-up


class Identifier:
    """Names characters against a bank of (name, descriptors float32 (n, D)) entries."""

    name = "tone-descriptors-v1"

    def __init__(self, bank: Sequence[tuple[str, np.ndarray]], config: IdentifierConfig = IdentifierConfig()):
        self.config = config
        self.names = [name for name, desc in bank if len(desc)]
        self._desc = [np.asarray(desc, np.float32) for _, desc in bank if len(desc)]

    def scores(self, descriptor: np.ndarray) -> np.ndarray:
        """Best cosine similarity of the descriptor to each bank name, float32 (len(names),)."""
        return np.array([float((d @ descriptor).max()) for d in self._desc], dtype=np.float32)

    def identify(self, gray_page: np.ndarray, det: PageDetections) -> PageDetections:
        """Set identity/confidence of every automatically named character of ``det``; overrides are kept."""
        if not self.names:
            return det.with_characters(
                c if c.identity_source == "override" else dataclasses.replace(c, identity=None, confidence=0.0)
                for c in det.characters
            )
        cands = []  # (similarity, char index, name index)
        results = {}
        for i, c in enumerate(det.characters):
            if c.identity_source == "override":
                continue
            x0, y0, x1, y1 = c.box
            s = self.scores(describe(gray_page[y0:y1, x0:x1], c.mask))
            order = np.argsort(-s)
            best = float(s[order[0]])
            second = float(s[order[1]]) if len(order) > 1 else 0.0
            results[i] = None
            if best >= self.config.threshold and best - second >= self.config.margin:
                for j in order:
                    if s[j] >= self.config.threshold:
                        cands.append((float(s[j]), i, int(j)))
        used: set[tuple[object, int]] = {
            (c.panel, self.names.index(c.identity)) for c in det.characters
            if c.identity_source == "override" and c.identity in self.names and c.panel is not None
        }
        for sim, i, j in sorted(cands, reverse=True):
            if results[i] is not None:
                continue
            panel = det.characters[i].panel
            if panel is not None and (panel, j) in used:
                continue  # one character appears at most once per panel
            results[i] = (self.names[j], sim)
            if panel is not None:
                used.add((panel, j))
        chars = []
        for i, c in enumerate(det.characters):
            if i not in results:
                chars.append(c)
            elif results[i] is None:
                chars.append(dataclasses.replace(c, identity=None, confidence=0.0, identity_source="auto"))
            else:
                name, sim = results[i]
                chars.append(dataclasses.replace(c, identity=name, confidence=min(1.0, max(0.0, sim)),
                                                 identity_source="auto"))
        return det.with_characters(chars)


def apply_identity_overrides(det: PageDetections, overrides) -> PageDetections:
    """A user's identity corrections win: each override names the detected character it overlaps most
    (IoU >= 0.3); an override that matches no detection adds that box as a character (the user saw one there)."""
    from manga_pipeline.records import box_iou

    chars = list(det.characters)
    for ov in overrides:
        ious = [box_iou(ov.box, c.box) for c in chars]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= 0.3:
            chars[best] = dataclasses.replace(chars[best], identity=ov.name, confidence=1.0, identity_source="override")
        else:
            x0, y0, x1, y1 = ov.box
            box = (max(0, x0), max(0, y0), min(det.width, x1), min(det.height, y1))
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            from shapely.geometry import Point

            panel = next((p.order for p in det.panels if p.polygon.contains(Point(cx, cy))), None)
            chars.append(CharacterInstance(box=box, score=1.0, identity=ov.name, confidence=1.0, panel=panel,
                                           identity_source="override"))
    return det.with_characters(chars)


def resolve_override_conflicts(det: PageDetections) -> PageDetections:
    """After overrides: an automatic name that a user's override uses in the same panel becomes unknown."""
    used = {(c.panel, c.identity) for c in det.characters
            if c.identity_source == "override" and c.identity is not None and c.panel is not None}
    return det.with_characters(
        dataclasses.replace(c, identity=None, confidence=0.0)
        if c.identity_source == "auto" and (c.panel, c.identity) in used and c.identity is not None else c
        for c in det.characters
    )
