"""The chapter pipeline: detect -> identify -> colorize (per panel) -> compose, for every page of a workspace.

Each stage's result is cached in the workspace under a key made of everything it depends on (page bytes,
stage settings, weights, bank features, overrides). A re-run recomputes only what changed; a run killed at any
point resumes where it was; a locked (accepted) panel keeps its stored colours whatever changes.
"""
from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from shapely.geometry import Point, box as shapely_box

from .config import PipelineConfig
from .fsutil import atomic_write_text
from .imageio import ImageError, decode_image, write_png
from .records import ColorizedPanel, Page, PageDetections, PageOutcome
from .workspace import BankEntry, Workspace, cache_key

COMPOSE_VERSION = 1


class PipelineError(RuntimeError):
    """A page cannot be processed for a reason the user can act on."""


@dataclass(frozen=True)
class PanelJob:
    """Everything the colorizer gets for one panel (crop coordinates), and the cache key of its result."""

    panel: int
    box: tuple[int, int, int, int]
    regions: tuple = field(repr=False)  # ((bool mask (h, w), ReferenceFeatures), ...)
    scene: object = field(repr=False)   # ReferenceFeatures | None
    hints: tuple = ()                   # ((x, y, (r, g, b)), ...) in crop pixels
    key: str = ""


@dataclass(frozen=True)
class RunSummary:
    outcomes: tuple[PageOutcome, ...]
    weights: str
    trained: bool
    seconds: float

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def cached(self) -> int:
        return sum(o.status == "done" and not o.recomputed for o in self.outcomes)

    def to_json(self) -> dict:
        return {
            "pages": len(self.outcomes),
            "done": self.count("done"),
            "cached": self.cached,
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "colorizer": self.weights,
            "colorizer_trained": self.trained,
            "seconds": round(self.seconds, 2),
            "outcomes": [
                {"page_id": o.page_id, "status": o.status, "output": str(o.output) if o.output else None,
                 "reason": o.reason, "recomputed": list(o.recomputed)}
                for o in self.outcomes
            ],
        }


def _bank_references(bank: list[BankEntry]) -> dict:
    from colorizer.reference import ReferenceFeatures

    refs = {}
    for entry in bank:
        if entry.features.get("references"):
            refs[entry.name] = ReferenceFeatures.from_json(entry.features["references"][0])
    return refs


class Pipeline:
    """Models are built once here and reused for every page of a run."""

    def __init__(self, config: PipelineConfig = PipelineConfig(), *, colorizer=None, detector=None):
        from colorizer.infer import Colorizer

        self.config = config
        if detector is None:
            from detectors.yolo import build_detector

            detector = build_detector(config.detect.backend, rtl=config.detect.rtl, weights=config.detect.weights)
        self.detector = detector
        self.colorizer = colorizer or Colorizer.load(config.colorize.weights)

    # --- stages -------------------------------------------------------------------------------------------

    def detect_key(self, page_id: str) -> str:
        return cache_key("detect", page_id, self.detector.name, dataclasses.asdict(self.detector.config))

    def identify(self, gray, det: PageDetections, bank: list[BankEntry], identity_overrides) -> PageDetections:
        """Identities of one page taken alone (a chapter of one page); the user's overrides win."""
        identifier = self.identifier(bank)
        ident = identifier.assign([(det, identifier.embed_characters(gray, det))]).pages[0]
        return self._with_overrides(ident, identity_overrides)

    # --- identification helpers (chapter-level: see detectors/identify.py) -----------------------------------

    @property
    def embedder(self):
        """The identity network (shipped weights, or untrained when none are shipped), loaded once."""
        if getattr(self, "_embedder", None) is None:
            from detectors.identify import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def identifier(self, bank: list[BankEntry]):
        """An Identifier over ``bank``; descriptors made by other weights are recomputed from the stored images."""
        from detectors.identify import Identifier, IdentifierConfig

        from .bank import identity_descriptors

        cfg = IdentifierConfig(threshold=self.config.identify.threshold, margin=self.config.identify.margin)
        return Identifier([(e.name, identity_descriptors(e, self.embedder)) for e in bank], cfg, self.embedder)

    def _identifier_settings(self) -> dict:
        from detectors.identify import VERSION, IdentifierConfig

        cfg = IdentifierConfig(threshold=self.config.identify.threshold, margin=self.config.identify.margin)
        return {"version": VERSION, "weights": self.embedder.weights_id, "config": dataclasses.asdict(cfg)}

    @staticmethod
    def _with_overrides(ident: PageDetections, identity_overrides) -> PageDetections:
        from detectors.identify import apply_identity_overrides, resolve_override_conflicts

        if not identity_overrides:
            return ident
        return resolve_override_conflicts(apply_identity_overrides(ident, identity_overrides))

    def prepare(self, ws: Workspace, page: Page, ran: list[str], gray=None) -> tuple[PageDetections, str, np.ndarray]:
        """Phase 1 of a page: (detections, their cache key, character embeddings float32 (n, D)), cached."""
        det_key = self.detect_key(page.page_id)
        det = ws.cached_detections(page.page_id, det_key)
        if det is None:
            gray = self._load(ws, page).gray if gray is None else gray
            det = self.detector.detect(page.page_id, gray)
            ws.save_detections(det, det_key, self.detector.name)
            ran.append("detect")
        emb_key = cache_key("embed", det_key, self.embedder.weights_id)
        emb = ws.cached_embeddings(emb_key)
        if emb is None or len(emb) != len(det.characters):
            if det.characters:
                from detectors.identify import character_crops

                gray = self._load(ws, page).gray if gray is None else gray
                emb = self.embedder.embed(character_crops(gray, det))
            else:
                emb = np.zeros((0, self.embedder.dim), np.float32)
            ws.save_embeddings(emb_key, emb)
            ran.append("embed")
        return det, det_key, emb

    def identify_chapter(self, ws: Workspace, prepared: list, bank: list[BankEntry]) -> list[PageDetections]:
        """Phase 2: name the characters of every prepared page together.

        ``prepared`` = [(page, det, det_key, embeddings, ran)]. The chapter result is keyed by the identifier
        (version, weights, settings), the bank and every page's detections; each page's stored identities add
        that page's identity overrides to the key, so a user's correction redoes only its page.
        """
        chapter_key = cache_key(
            "identify-chapter", self._identifier_settings(), sorted((e.name, e.fingerprint) for e in bank),
            [(page.page_id, det_key) for page, _, det_key, _, _ in prepared],
        )
        out, result = [], None
        for k, (page, det, _, emb, ran) in enumerate(prepared):
            overrides = ws.overrides(page.page_id).identities
            id_key = cache_key("identify", chapter_key, [(list(o.box), o.name) for o in overrides])
            ident = ws.cached_identities(page.page_id, id_key)
            if ident is None:
                if result is None:
                    result = self.identifier(bank).assign([(d, e) for _, d, _, e, _ in prepared])
                    ws.save_unknown_clusters(chapter_key, [c.to_json() for c in result.clusters])
                ident = self._with_overrides(result.pages[k], overrides)
                ws.save_identities(ident, id_key, f"{self._identifier_settings()['version']} "
                                                  f"({self.embedder.weights_id})")
                ran.append("identify")
            out.append(ident)
        return out
    def panel_jobs(self, det: PageDetections, overrides, refs: dict, bank_fp: dict,
                   scene: str | None = None) -> list[PanelJob]:
        """One job per panel in reading order, plus the page-level pass (panel -1) when enabled.

        ``scene`` (a bank name) is the page-level reference of panels that have no reference override;
        default: the configured ``colorize.scene``.
        """
        default_scene = scene if scene is not None else self.config.colorize.scene
        ref_choice = dict(overrides.panel_references)
        areas = [(p.order, p.polygon, p.box) for p in det.panels_in_order()]
        if self.config.colorize.page_pass or not areas:
            full = shapely_box(0, 0, det.width, det.height)
            areas.append((-1, full, (0, 0, det.width, det.height)))
        jobs = []
        for order, polygon, box in areas:
            x0, y0 = max(0, box[0]), max(0, box[1])
            x1, y1 = min(det.width, box[2]), min(det.height, box[3])
            if x1 <= x0 or y1 <= y0:
                continue
            regions, region_key = [], []
            for c in det.characters:
                if order >= 0 and c.panel is not None and c.panel != order:
                    continue
                if order >= 0 and c.panel is None:
                    cx, cy = (c.box[0] + c.box[2]) / 2, (c.box[1] + c.box[3]) / 2
                    if not polygon.contains(Point(cx, cy)):
                        continue
                if c.identity is None or c.identity not in refs:
                    continue
                mask = np.zeros((y1 - y0, x1 - x0), bool)
                cx0, cy0, cx1, cy1 = c.box
                sub = c.mask if c.mask is not None else np.ones((cy1 - cy0, cx1 - cx0), bool)
                ix0, iy0, ix1, iy1 = max(cx0, x0), max(cy0, y0), min(cx1, x1), min(cy1, y1)
                if ix1 <= ix0 or iy1 <= iy0:
                    continue
                mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = sub[iy0 - cy0:iy1 - cy0, ix0 - cx0:ix1 - cx0]
                regions.append((mask, refs[c.identity]))
                region_key.append((list(c.box), c.identity, bank_fp[c.identity]))
            scene_name = ref_choice.get(order, default_scene)
            if scene_name is not None and scene_name not in refs:
                raise PipelineError(
                    f"panel {order} uses reference {scene_name!r}, which is not a character with a colour "
                    "reference in the bank"
                )
            scene = refs.get(scene_name) if scene_name else None
            hints = tuple(
                (h.x - x0, h.y - y0, h.rgb) for h in overrides.hints
                if x0 <= h.x < x1 and y0 <= h.y < y1 and polygon.buffer(0.5).contains(Point(h.x, h.y))
            )
            key = cache_key(
                "panel", det.page_id, order, [list(map(float, xy)) for xy in polygon.exterior.coords],
                self.colorizer.weights_id, region_key, scene_name and bank_fp[scene_name], hints,
            )
            jobs.append(PanelJob(order, (x0, y0, x1, y1), tuple(regions), scene, hints, key))
        return jobs

    # --- one page -----------------------------------------------------------------------------------------

    def _load(self, ws: Workspace, page: Page):
        name = Path(ws.page_name(page.page_id)).name
        try:
            data = page.source.read_bytes()
        except OSError as exc:
            raise ImageError(f"{name}: the workspace's copy {page.source} cannot be read ({exc.strerror})") from None
        return decode_image(data, name)

    def analyse(self, ws: Workspace, page: Page, gray, bank: list[BankEntry], overrides,
                ran: list[str]) -> PageDetections:
        """Detections with identities of one page taken as its own chapter (cached like a chapter's).

        ``overrides`` is kept for the signature: the identity overrides are read from the workspace."""
        det, det_key, emb = self.prepare(ws, page, ran, gray)
        return self.identify_chapter(ws, [(page, det, det_key, emb, ran)], bank)[0]

    def analyse_page(self, ws: Workspace, page: Page, bank: list[BankEntry]) -> PageDetections:
        return self.analyse(ws, page, None, bank, ws.overrides(page.page_id), [])

    def process_page(self, ws: Workspace, page: Page, bank: list[BankEntry], *,
                     scene: str | None = None, ident: PageDetections | None = None,
                     ran: list[str] | None = None) -> PageOutcome:
        """Colour one page. ``ident``: its identified detections from the chapter phase (default: the page is
        identified on its own)."""
        from layout.compose import compose_page

        ran = [] if ran is None else ran
        img = self._load(ws, page)
        if img.is_color and self.config.run.skip_color_pages:
            out = ws.output_path(page)
            key = cache_key("skip", page.page_id)
            res = ws.page_result(page.page_id)
            if not (res and res["key"] == key and out.exists()):
                write_png(out, img.rgb)
                ws.save_page_result(page.page_id, key, "skipped", out, reason="already in colour")
                ran.append("copy")
            return PageOutcome(page.page_id, "skipped", out, "already in colour", tuple(ran))
        gray = img.gray
        overrides = ws.overrides(page.page_id)
        if ident is None:
            ident = self.analyse(ws, page, gray, bank, overrides, ran)
        bank_fp = {e.name: e.fingerprint for e in bank}

        refs = _bank_references(bank)
        colorized, keys = [], []
        for job in self.panel_jobs(ident, overrides, refs, bank_fp, scene):
            stored = ws.panel_result(page.page_id, job.panel)
            if stored is not None and (stored[0] == job.key or job.panel in overrides.locked_panels):
                key, chroma, weights = stored
            else:
                x0, y0, x1, y1 = job.box
                chroma = self.colorizer.colorize_panel(
                    gray[y0:y1, x0:x1], regions=job.regions, scene=job.scene, hints=job.hints
                ).astype(np.float32)
                key, weights = job.key, self.colorizer.weights_id
                ws.save_panel_result(page.page_id, job.panel, key, chroma, weights)
                ran.append(f"panel {job.panel}")
            keys.append(key)
            colorized.append(ColorizedPanel(page.page_id, job.panel, job.box, chroma, weights))

        page_key = cache_key("compose", COMPOSE_VERSION, keys, [list(t.box) for t in ident.texts])
        out = ws.output_path(page)
        res = ws.page_result(page.page_id)
        if not (res and res["key"] == page_key and res["status"] == "done" and out.exists()):
            panels = [c for c in colorized if c.panel >= 0]
            page_pass = next((c for c in colorized if c.panel == -1), None)
            composed = compose_page(gray, ident.panels_in_order(), panels, texts=ident.texts, page_pass=page_pass)
            write_png(out, composed.rgb)
            ws.save_page_result(page.page_id, page_key, "done", out, weights=self.colorizer.weights_id)
            ran.append("compose")
        return PageOutcome(page.page_id, "done", out, "", tuple(ran))

    # --- a chapter ----------------------------------------------------------------------------------------

    def run(self, ws: Workspace, *, pages: list[Page] | None = None, scene: str | None = None,
            on_page: Callable[[Page, PageOutcome], None] | None = None) -> RunSummary:
        """Process ``pages`` (default: all) of ``ws``; a failing page is recorded and the run goes on.

        Three phases: detect and embed every page (cached per page), name the characters of all those pages
        together (chapter-level reasoning, cached per page), then colour and compose page by page.
        """
        t0 = time.perf_counter()
        bank = ws.bank()
        pages = ws.pages() if pages is None else pages
        run_id = ws.start_run({"config": self.config.to_dict(), "colorizer": self.colorizer.weights_id,
                               "detector": self.detector.name})
        outcomes: dict[str, PageOutcome] = {}
        ran: dict[str, list[str]] = {p.page_id: [] for p in pages}

        def guarded(page, fn):
            try:
                return fn()
            except (ImageError, PipelineError) as exc:
                outcomes[page.page_id] = self._fail(ws, page, str(exc))
            except Exception as exc:  # one bad page never stops a chapter; the traceback goes to the log
                log = ws.root / "logs" / f"run-{run_id}-{page.short_id}.txt"
                atomic_write_text(log, traceback.format_exc())
                outcomes[page.page_id] = self._fail(ws, page, f"{type(exc).__name__}: {exc} (details: {log})")
            return None

        prepared = []
        for page in pages:
            if page.is_color and self.config.run.skip_color_pages:
                continue
            got = guarded(page, lambda: self.prepare(ws, page, ran[page.page_id]))
            if got is not None:
                prepared.append((page, *got, ran[page.page_id]))
        idents: dict[str, PageDetections] = {}
        if prepared:
            try:
                idents = {p.page_id: d for (p, *_), d in zip(prepared, self.identify_chapter(ws, prepared, bank))}
            except Exception as exc:  # e.g. a bank image that cannot be read: every page says why
                reason = f"character identification failed: {type(exc).__name__}: {exc}"
                for page, *_ in prepared:
                    outcomes[page.page_id] = self._fail(ws, page, reason)
        for page in pages:
            if page.page_id not in outcomes:
                if page.page_id in idents or page.is_color:
                    outcome = guarded(page, lambda: self.process_page(
                        ws, page, bank, scene=scene, ident=idents.get(page.page_id), ran=ran[page.page_id]))
                    if outcome is not None:
                        outcomes[page.page_id] = outcome
            if on_page:
                on_page(page, outcomes[page.page_id])
        summary = RunSummary(tuple(outcomes[p.page_id] for p in pages), self.colorizer.weights_id,
                             self.colorizer.trained, time.perf_counter() - t0)
        ws.finish_run(run_id, {k: v for k, v in summary.to_json().items() if k != "outcomes"})
        return summary

    @staticmethod
    def _fail(ws: Workspace, page: Page, reason: str) -> PageOutcome:
        name = Path(ws.page_name(page.page_id)).name
        reason = reason if reason.startswith(name) else f"{name}: {reason}"
        ws.save_page_result(page.page_id, "failed", "failed", None, reason=reason)
        return PageOutcome(page.page_id, "failed", None, reason)
