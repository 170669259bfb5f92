"""Detection stage: panels, speech balloons / lettering, and characters on a gray page.

``ClassicalDetector`` is the first version, built on OpenCV morphology and shapely geometry with no learned
weights; a learned detector will sit behind the same interface: ``detect(page_id, gray) -> PageDetections``
and a ``name`` that goes into cache keys (bump it whenever the output changes). The stages can also be called
one by one: ``detect_panels`` → ``detect_text`` (uses the panels) → ``detect_characters`` (uses both).

Everything works on a reduced copy of the page and returns page pixels. How well it does on real pages is
measured by ``benchmarks/eval_classical_detect.py``; its known weaknesses: panels joined by art across a
gutter that no straight line separates stay merged; frameless panels are found only next to framed ones or
as the page-level panel; characters are compact masses of line art, not a learned notion of a figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from manga_pipeline.records import PageDetections

from .base import check_gray
from .characters import CharacterConfig, detect_characters
from .panels import PanelConfig, detect_panels
from .text import TextConfig, detect_text

__all__ = [
    "CharacterConfig",
    "ClassicalDetector",
    "DetectorConfig",
    "PanelConfig",
    "TextConfig",
    "detect_characters",
    "detect_panels",
    "detect_text",
]


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the classical detectors. ``rtl``: manga reading order (right to left)."""

    rtl: bool = True
    panels: PanelConfig = field(default_factory=PanelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    characters: CharacterConfig = field(default_factory=CharacterConfig)


class ClassicalDetector:
    """Panels, text regions and characters of one gray page, without learned weights."""

    name = "classical-v1"

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        self.config = config

    def detect(self, page_id: str, gray: np.ndarray) -> PageDetections:
        """Detect on ``gray`` (``uint8 (H, W)``, page pixels); every box and polygon is in page pixels."""
        check_gray(gray)
        cfg = self.config
        panels = detect_panels(gray, rtl=cfg.rtl, config=cfg.panels)
        texts = detect_text(gray, panels, config=cfg.text)
        characters = detect_characters(gray, panels, texts, config=cfg.characters)
        h, w = gray.shape
        return PageDetections(page_id, w, h, panels=panels, characters=characters, texts=texts)
