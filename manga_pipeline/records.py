"""Records that flow between pipeline stages.

Conventions (every stage follows them):
- Coordinates are page pixels of the (EXIF-transposed) input image, origin top-left, x to the right.
- Boxes are ``(x0, y0, x1, y1)`` integers, half-open: the box covers columns ``x0 .. x1-1``.
- Panels are shapely polygons in page pixels; ``order`` is the reading index (0 = read first).
- Images: gray pages are ``uint8 (H, W)``; colour images ``uint8 (H, W, 3)`` RGB.
- Chroma is CIE Lab a*/b* as ``float32 (h, w, 2)`` (OpenCV's float Lab: L in 0..100, a*, b* in about -128..127).

Every record is a frozen dataclass whose invariants are checked on creation: a stage that builds a bad
record fails at once, where the mistake is, instead of three stages later.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon, box as shapely_box

Box = tuple[int, int, int, int]

PAGE_ID_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[^\x00-\x1f/\\]{1,64}$")


class RecordError(ValueError):
    """A record was built with values that break its invariants."""


def check_box(box, width: int | None = None, height: int | None = None, what: str = "box") -> Box:
    """Validate and normalise a box to a tuple of 4 ints; optionally check it lies inside the page."""
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{what} must be 4 numbers (x0, y0, x1, y1), got {box!r}") from exc
    if x1 <= x0 or y1 <= y0:
        raise RecordError(f"{what} {box!r} is empty: need x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0:
        raise RecordError(f"{what} {box!r} has negative coordinates")
    if width is not None and x1 > width:
        raise RecordError(f"{what} {box!r} extends past the page width {width}")
    if height is not None and y1 > height:
        raise RecordError(f"{what} {box!r} extends past the page height {height}")
    return (x0, y0, x1, y1)


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name != name.strip():
        raise RecordError(
            f"character name {name!r} is not valid: use 1-64 printable characters, no slashes, "
            "no leading or trailing spaces"
        )
    return name


def _check_unit(value: float, what: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise RecordError(f"{what} must lie in [0, 1], got {value}")
    return value


def _check_mask(mask, box: Box, what: str):
    if mask is None:
        return
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise RecordError(f"{what} mask must be a numpy bool array")
    want = (box[3] - box[1], box[2] - box[0])
    if mask.shape != want:
        raise RecordError(f"{what} mask shape {mask.shape} does not match its box size (h, w) = {want}")


@dataclass(frozen=True)
class Page:
    """One page of a chapter. ``page_id`` is the sha256 of the original file's bytes."""

    page_id: str
    source: Path
    width: int
    height: int
    is_color: bool
    position: int = 0

    def __post_init__(self):
        if not PAGE_ID_RE.match(self.page_id):
            raise RecordError(f"page_id must be a sha256 hex digest, got {self.page_id!r}")
        object.__setattr__(self, "source", Path(self.source))
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise RecordError(f"page size must be positive, got {self.width}x{self.height}")
        if self.position < 0:
            raise RecordError(f"page position must be >= 0, got {self.position}")

    @property
    def short_id(self) -> str:
        return self.page_id[:12]


@dataclass(frozen=True)
class Panel:
    """A panel: its outline in page pixels and its place in reading order."""

    polygon: Polygon
    order: int
    score: float = 1.0

    def __post_init__(self):
        if not isinstance(self.polygon, Polygon):
            raise RecordError(f"panel polygon must be a shapely Polygon, got {type(self.polygon).__name__}")
        if self.polygon.is_empty or not self.polygon.is_valid or self.polygon.area < 1.0:
            raise RecordError("panel polygon must be a valid, non-empty polygon")
        if self.order < 0:
            raise RecordError(f"panel order must be >= 0, got {self.order}")
        _check_unit(self.score, "panel score")

    @property
    def box(self) -> Box:
        x0, y0, x1, y1 = self.polygon.bounds
        return (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))

    @classmethod
    def from_box(cls, box, order: int, score: float = 1.0) -> "Panel":
        x0, y0, x1, y1 = check_box(box, what="panel box")
        return cls(shapely_box(x0, y0, x1, y1), order, score)


@dataclass(frozen=True)
class CharacterInstance:
    """A character found on a page. ``identity`` None means unknown (never forced onto a bank name)."""

    box: Box
    score: float = 1.0
    identity: str | None = None
    confidence: float = 0.0
    panel: int | None = None
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    identity_source: str = "auto"  # "auto" (identifier) or "override" (a user's correction)

    def __post_init__(self):
        object.__setattr__(self, "box", check_box(self.box, what="character box"))
        _check_unit(self.score, "character score")
        _check_unit(self.confidence, "identity confidence")
        if self.identity is not None:
            check_name(self.identity)
        if self.identity_source not in ("auto", "override"):
            raise RecordError(f"identity_source must be 'auto' or 'override', got {self.identity_source!r}")
        _check_mask(self.mask, self.box, "character")


TEXT_KINDS = ("balloon", "text")


@dataclass(frozen=True)
class TextRegion:
    """A region that must stay paper-white: a speech balloon's interior or lettering."""

    box: Box
    kind: str = "balloon"
    score: float = 1.0
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "box", check_box(self.box, what="text box"))
        if self.kind not in TEXT_KINDS:
            raise RecordError(f"text region kind must be one of {TEXT_KINDS}, got {self.kind!r}")
        _check_unit(self.score, "text score")
        _check_mask(self.mask, self.box, "text region")


@dataclass(frozen=True)
class PageDetections:
    """What the detectors found on one page."""

    page_id: str
    width: int
    height: int
    panels: tuple[Panel, ...] = ()
    characters: tuple[CharacterInstance, ...] = ()
    texts: tuple[TextRegion, ...] = ()

    def __post_init__(self):
        if not PAGE_ID_RE.match(self.page_id):
            raise RecordError(f"page_id must be a sha256 hex digest, got {self.page_id!r}")
        for name in ("panels", "characters", "texts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        orders = sorted(p.order for p in self.panels)
        if orders != list(range(len(self.panels))):
            raise RecordError(f"panel orders must be 0..{len(self.panels) - 1} without gaps, got {orders}")
        for item in (*self.characters, *self.texts):
            check_box(item.box, self.width, self.height, what=f"{type(item).__name__} box")
        for p in self.panels:
            x0, y0, x1, y1 = p.polygon.bounds
            if x0 < -0.5 or y0 < -0.5 or x1 > self.width + 0.5 or y1 > self.height + 0.5:
                raise RecordError(f"panel {p.order} extends past the page ({self.width}x{self.height})")
        for c in self.characters:
            if c.panel is not None and not (0 <= c.panel < len(self.panels)):
                raise RecordError(f"character refers to panel {c.panel}, page has {len(self.panels)} panels")

    def panels_in_order(self) -> tuple[Panel, ...]:
        return tuple(sorted(self.panels, key=lambda p: p.order))

    def with_characters(self, characters) -> "PageDetections":
        return dataclasses.replace(self, characters=tuple(characters))


# --- overrides: a user's corrections, stored in the workspace and replayed on every run -----------------


@dataclass(frozen=True)
class IdentityOverride:
    """"The character in this box is NAME" (or unknown when ``name`` is None). Matched to detections by IoU."""

    page_id: str
    box: Box
    name: str | None

    def __post_init__(self):
        if not PAGE_ID_RE.match(self.page_id):
            raise RecordError(f"page_id must be a sha256 hex digest, got {self.page_id!r}")
        object.__setattr__(self, "box", check_box(self.box, what="override box"))
        if self.name is not None:
            check_name(self.name)


HEX_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ColorHint:
    """A colour pinned at a page point: the colorizer must use ``color`` (``#RRGGBB``) around (x, y)."""

    page_id: str
    x: int
    y: int
    color: str

    def __post_init__(self):
        if not PAGE_ID_RE.match(self.page_id):
            raise RecordError(f"page_id must be a sha256 hex digest, got {self.page_id!r}")
        if int(self.x) < 0 or int(self.y) < 0:
            raise RecordError(f"hint point ({self.x}, {self.y}) has negative coordinates")
        if not HEX_COLOR_RE.match(self.color):
            raise RecordError(f"hint colour must look like #RRGGBB, got {self.color!r}")
        object.__setattr__(self, "color", self.color.lower())

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i:i + 2], 16) for i in (1, 3, 5))


@dataclass(frozen=True)
class PageOverrides:
    """All of a user's overrides for one page."""

    page_id: str
    identities: tuple[IdentityOverride, ...] = ()
    hints: tuple[ColorHint, ...] = ()
    panel_references: tuple[tuple[int, str], ...] = ()  # (panel order or -1 for the page pass, reference name)
    locked_panels: frozenset[int] = frozenset()

    def __post_init__(self):
        for item in (*self.identities, *self.hints):
            if item.page_id != self.page_id:
                raise RecordError("override belongs to another page")
        for order, ref in self.panel_references:
            if order < -1:
                raise RecordError(f"panel order must be >= -1 (-1: art outside panels), got {order}")
            check_name(ref)


# --- results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColorizedPanel:
    """The colorizer's chroma for one panel, at working resolution, covering ``box`` of the page."""

    page_id: str
    panel: int  # reading order of the panel; -1 for the page-level pass over art outside panels
    box: Box
    chroma: np.ndarray = field(compare=False, repr=False)
    weights: str = "untrained"  # weights tag (name.tag@sha12) or "untrained"

    def __post_init__(self):
        object.__setattr__(self, "box", check_box(self.box, what="colorized panel box"))
        if self.panel < -1:
            raise RecordError(f"panel index must be >= -1, got {self.panel}")
        c = self.chroma
        if not isinstance(c, np.ndarray) or c.dtype != np.float32 or c.ndim != 3 or c.shape[2] != 2:
            raise RecordError("chroma must be a float32 array of shape (h, w, 2)")
        if not np.isfinite(c).all():
            raise RecordError("chroma contains NaN or infinite values")


PAGE_STATUSES = ("pending", "done", "failed", "skipped")


@dataclass(frozen=True)
class PageOutcome:
    """How one page of a run ended."""

    page_id: str
    status: str
    output: Path | None = None
    reason: str = ""
    recomputed: tuple[str, ...] = ()  # stages that ran (empty when everything came from the cache)

    def __post_init__(self):
        if self.status not in PAGE_STATUSES:
            raise RecordError(f"page status must be one of {PAGE_STATUSES}, got {self.status!r}")
        if self.status == "failed" and not self.reason:
            raise RecordError("a failed page needs a reason")
        if self.status == "done" and self.output is None:
            raise RecordError("a done page needs an output path")
