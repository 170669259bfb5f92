"""The chapter pipeline: detect -> identify -> colorize (per panel) -> compose, for every page of a workspace.

Each stage's result is cached in the workspace under a key made of everything it depends on (page bytes,
stage settings, weights, bank features, overrides). A re-run recomputes only what changed; a run killed at any
point resumes where it was; a locked (accepted) panel keeps its stored colours whatever changes.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from shapely.geometry import Point, box as shapely_box

from .config import PipelineConfig
from .engine import (
    Engine,
    LocalEngine,
    ModelFactory,
    Models,
    PreparedPage,
    PrepareTask,
    RenderedPage,
    RenderTask,
    TaskFailure,
    prepare_page,
    render_page,
    run_task,
    task_threads,
)
from .fsutil import atomic_write_text
from .imageio import ImageError, decode_image
from .records import Page, PageDetections, PageOutcome
from .workspace import BankEntry, Workspace, WorkspaceError, cache_key, detections_from_json, detections_to_json

COMPOSE_VERSION = 2  # 2: the flat blend colours paper only on named characters and around hints


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
    """How a run ended: one outcome per page (in page order), the colorizer that ran, wall seconds."""

    outcomes: tuple[PageOutcome, ...]
    weights: str
    trained: bool
    seconds: float
    workers: int = 1

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def cached(self) -> int:
        """Pages that were done and stayed as they were (nothing recomputed)."""
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
            "workers": self.workers,
            "seconds": round(self.seconds, 2),
            "outcomes": [
                {"page_id": o.page_id, "status": o.status, "output": str(o.output) if o.output else None,
                 "reason": o.reason, "recomputed": list(o.recomputed)}
                for o in self.outcomes
            ],
        }


def _bank_references(bank: list[BankEntry]) -> dict:
    from .bank import colour_reference

    refs = {}
    for entry in bank:
        ref = colour_reference(entry)
        if ref is not None:
            refs[entry.name] = ref
    return refs


class Pipeline:
    """The driver of a chapter run. Models are built once here and reused for every page of a run; with
    worker processes (``run(..., workers=N)``) each worker builds its own from :meth:`model_factory`.

    The driver is the only writer of the workspace: it plans each page from the cache, hands the heavy work to
    an engine (``manga_pipeline.engine``) as picklable tasks and stores the results as they come back.
    """

    def __init__(self, config: PipelineConfig = PipelineConfig(), *, colorizer=None, detector=None):
        self.config = config
        self._injected = (detector, colorizer)  # given by the caller: workers get these (pickled) too
        models = ModelFactory(config, detector, colorizer)()
        self.detector = models.detector
        self.colorizer = models.colorizer

    def model_factory(self) -> ModelFactory:
        """The picklable recipe a worker process (or a Ray actor) builds this pipeline's models from."""
        detector, colorizer = self._injected
        return ModelFactory(self.config, detector, colorizer, getattr(self, "_embedder", None))

    @property
    def models(self) -> Models:
        """This process's models (read at call time: a caller may have wrapped ``self.colorizer``)."""
        return Models(self.detector, self.colorizer, self.embedder)

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

    def embed_key(self, det_key: str) -> str:
        return cache_key("embed", det_key, self.embedder.weights_id)

    def plan_prepare(self, ws: Workspace, page: Page) -> PrepareTask | tuple[PageDetections, str, np.ndarray]:
        """Phase 1 from the cache: (detections, their key, embeddings) when both are cached, else the task."""
        det_key = self.detect_key(page.page_id)
        det = ws.cached_detections(page.page_id, det_key)
        if det is not None:
            emb = ws.cached_embeddings(self.embed_key(det_key))
            if emb is not None and len(emb) == len(det.characters):
                return det, det_key, emb
        return PrepareTask(page.page_id, Path(ws.page_name(page.page_id)).name, page.source, det)

    def store_prepared(self, ws: Workspace, result: PreparedPage,
                       ran: list[str]) -> tuple[PageDetections, str, np.ndarray]:
        """Store a phase-1 result; returns what ``plan_prepare`` returns for a cached page."""
        if result.detector != self.detector.name or result.embedder != self.embedder.weights_id:
            raise PipelineError(f"a worker used detector {result.detector} / identity weights {result.embedder}, "
                                f"not {self.detector.name} / {self.embedder.weights_id} like this run")
        det_key = self.detect_key(result.page_id)
        det = result.detections
        if "detect" in result.ran:
            ws.save_detections(det, det_key, result.detector)
            # what a resumed run reads back from the cache, so a killed run and a clean one agree exactly
            det = detections_from_json(detections_to_json(det))
        ws.save_embeddings(self.embed_key(det_key), result.embeddings)
        ran.extend(result.ran)
        return det, det_key, result.embeddings

    def prepare(self, ws: Workspace, page: Page, ran: list[str], gray=None) -> tuple[PageDetections, str, np.ndarray]:
        """Phase 1 of a page in this process: (detections, their cache key, float32 (n, D) embeddings), cached.
        ``gray`` is kept for the signature (the task reads the page itself)."""
        plan = self.plan_prepare(ws, page)
        if not isinstance(plan, PrepareTask):
            return plan
        return self.store_prepared(ws, _unwrap(_in_process(prepare_page, self.models, plan)), ran)

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
                self.config.colorize.palette_anchor and self.config.colorize.anchor_l_weight,
                *(("transfer", self.config.colorize.transfer) if self.config.colorize.transfer != "network" else ()),
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

    # --- phase 3 of a page: plan from the cache, render (anywhere), store ----------------------------------

    def plan_render(self, ws: Workspace, page: Page, bank: list[BankEntry], ident: PageDetections | None, *,
                    scene: str | None = None, ran: list[str] | None = None) -> RenderTask | PageOutcome:
        """What is left to do for one page: its outcome when everything is cached, else a RenderTask that
        carries the stored chroma of the panels that are still valid (a locked panel always is)."""
        ran = [] if ran is None else ran
        name = Path(ws.page_name(page.page_id)).name
        out = ws.output_path(page)
        res = ws.page_result(page.page_id)
        if page.is_color and self.config.run.skip_color_pages:
            key = cache_key("skip", page.page_id)
            if res and res["key"] == key and out.exists():
                return PageOutcome(page.page_id, "skipped", out, "already in colour", tuple(ran))
            return RenderTask(page.page_id, name, page.source, out, copy=True, key=key)
        overrides = ws.overrides(page.page_id)
        refs = _bank_references(bank)
        bank_fp = {e.name: e.fingerprint for e in bank}
        jobs = self.panel_jobs(ident, overrides, refs, bank_fp, scene)
        stored = ws.panel_keys(page.page_id)
        keys, valid = [], []
        for job in jobs:
            key = stored.get(job.panel)
            ok = key is not None and (key == job.key or job.panel in overrides.locked_panels)
            keys.append(key if ok else job.key)
            valid.append(ok)
        page_key = compose_key(keys, ident, self.config)
        compose = not (res and res["key"] == page_key and res["status"] == "done" and out.exists())
        if not compose:
            if all(valid):
                return PageOutcome(page.page_id, "done", out, "", tuple(ran))
            jobs = [j for j, ok in zip(jobs, valid) if not ok]  # only lost panel chroma: recompute, keep the page
            cached = [None] * len(jobs)
        else:
            cached = []
            for job, ok in zip(jobs, valid):
                got = ws.panel_result(page.page_id, job.panel) if ok else None
                cached.append(None if got is None else (got[1], got[2]))
        return RenderTask(page.page_id, name, page.source, out, ident, tuple(jobs), tuple(cached), compose,
                          key=page_key, settings=self.config)

    def store_rendered(self, ws: Workspace, task: RenderTask, result: RenderedPage,
                       ran: list[str]) -> PageOutcome:
        """Store what a render task did (panel chroma, the page's result row); returns the page's outcome."""
        for p in result.panels:
            if p.weights != self.colorizer.weights_id:
                raise PipelineError(f"a worker coloured with {p.weights}, not {self.colorizer.weights_id} like "
                                    "this run")
        for p in result.panels:
            ws.save_panel_result(task.page_id, p.panel, p.key, p.chroma, p.weights)
        ran.extend(result.ran)
        if task.copy:
            ws.save_page_result(task.page_id, task.key, "skipped", task.output, reason="already in colour")
            return PageOutcome(task.page_id, "skipped", task.output, "already in colour", tuple(ran))
        if task.compose:
            ws.save_page_result(task.page_id, task.key, "done", task.output, weights=self.colorizer.weights_id)
        return PageOutcome(task.page_id, "done", task.output, "", tuple(ran))

    def process_page(self, ws: Workspace, page: Page, bank: list[BankEntry], *,
                     scene: str | None = None, ident: PageDetections | None = None,
                     ran: list[str] | None = None) -> PageOutcome:
        """Colour one page in this process. ``ident``: its identified detections from the chapter phase
        (default: the page is identified on its own)."""
        ran = [] if ran is None else ran
        if ident is None and not (page.is_color and self.config.run.skip_color_pages):
            ident = self.analyse(ws, page, None, bank, None, ran)
        plan = self.plan_render(ws, page, bank, ident, scene=scene, ran=ran)
        if isinstance(plan, PageOutcome):
            return plan
        return self.store_rendered(ws, plan, _unwrap(_in_process(render_page, self.models, plan)), ran)

    # --- a chapter ----------------------------------------------------------------------------------------

    def run(self, ws: Workspace, *, pages: list[Page] | None = None, scene: str | None = None,
            on_page: Callable[[Page, PageOutcome], None] | None = None,
            on_prepared: Callable[[Page], None] | None = None,
            workers: int = 1, engine: Engine | None = None) -> RunSummary:
        """Process ``pages`` (default: all) of ``ws``; a failing page is recorded and the run goes on.

        Three phases: detect and embed every page (cached per page), name the characters of all those pages
        together (chapter-level reasoning, cached per page), then colour and compose page by page. Phases 1
        and 3 run on ``engine`` (default: a LocalEngine with ``workers`` processes; 1 = this process); this
        process alone writes the workspace. ``on_prepared(page)`` is called once per page after phase 1,
        ``on_page(page, outcome)`` once per page when its outcome is known (completion order).

        Raises WorkspaceError when another run holds the workspace.
        """
        t0 = time.perf_counter()
        with _run_lock(ws):
            _remove_stale_partial_files(ws)
            own = engine is None
            engine = LocalEngine(self.model_factory(), workers, models=self.models) if own else engine
            try:
                outcomes = self._run(ws, engine, pages, scene, on_page, on_prepared)
            except BaseException:  # e.g. Ctrl-C: do not wait for the pages in flight
                if own:
                    engine.close(wait=False)
                raise
            if own:
                engine.close()
        summary = RunSummary(tuple(outcomes), self.colorizer.weights_id, self.colorizer.trained,
                             time.perf_counter() - t0, engine.workers)
        return summary

    def _run(self, ws, engine, pages, scene, on_page, on_prepared) -> list[PageOutcome]:
        bank = ws.bank()
        pages = ws.pages() if pages is None else pages
        run_id = ws.start_run({"config": self.config.to_dict(), "colorizer": self.colorizer.weights_id,
                               "detector": self.detector.name, "workers": engine.workers})
        by_id = {p.page_id: p for p in pages}
        outcomes: dict[str, PageOutcome] = {}
        ran: dict[str, list[str]] = {p.page_id: [] for p in pages}
        skip_color = self.config.run.skip_color_pages

        def guarded(page, fn):
            try:
                return fn()
            except TaskFailed as exc:
                outcomes[page.page_id] = self._fail_task(ws, page, exc.failure, run_id)
            except (ImageError, PipelineError) as exc:
                outcomes[page.page_id] = self._fail(ws, page, str(exc))
            except Exception as exc:  # one bad page never stops a chapter; the traceback goes to the log
                outcomes[page.page_id] = self._fail_task(
                    ws, page, TaskFailure(page.page_id, f"{type(exc).__name__}: {exc}", False,
                                          _format_exc()), run_id)
            return None

        def tell(fn, *args):
            if fn is not None:
                fn(*args)

        # phase 1: detect + embed
        prepared: dict[str, tuple] = {}
        tasks = []
        for page in pages:
            if page.is_color and skip_color:
                tell(on_prepared, page)
                continue
            plan = guarded(page, lambda: self.plan_prepare(ws, page))
            if isinstance(plan, PrepareTask):
                tasks.append(plan)
                continue
            if plan is not None:
                prepared[page.page_id] = plan
            tell(on_prepared, page)
        for task, result in engine.map(prepare_page, tasks):
            page = by_id[task.page_id]
            if isinstance(result, TaskFailure):
                outcomes[page.page_id] = self._fail_task(ws, page, result, run_id)
            else:
                got = guarded(page, lambda: self.store_prepared(ws, result, ran[page.page_id]))
                if got is not None:
                    prepared[page.page_id] = got
            tell(on_prepared, page)

        # phase 2: name the characters of the whole chapter
        chapter = [(p, *prepared[p.page_id], ran[p.page_id]) for p in pages if p.page_id in prepared]
        idents: dict[str, PageDetections] = {}
        if chapter:
            try:
                idents = {p.page_id: d for (p, *_), d in zip(chapter, self.identify_chapter(ws, chapter, bank))}
            except Exception as exc:  # e.g. a bank image that cannot be read: every page says why
                reason = f"character identification failed: {type(exc).__name__}: {exc}"
                for page, *_ in chapter:
                    outcomes[page.page_id] = self._fail(ws, page, reason)

        # phase 3: colour + compose
        tasks = []
        for page in pages:
            if page.page_id not in outcomes and (page.page_id in idents or (page.is_color and skip_color)):
                plan = guarded(page, lambda: self.plan_render(ws, page, bank, idents.get(page.page_id),
                                                              scene=scene, ran=ran[page.page_id]))
                if isinstance(plan, RenderTask):
                    tasks.append(plan)
                    continue
                if plan is not None:
                    outcomes[page.page_id] = plan
            tell(on_page, page, outcomes[page.page_id])
        for task, result in engine.map(render_page, tasks):
            page = by_id[task.page_id]
            if isinstance(result, TaskFailure):
                outcomes[page.page_id] = self._fail_task(ws, page, result, run_id)
            else:
                got = guarded(page, lambda: self.store_rendered(ws, task, result, ran[page.page_id]))
                if got is not None:
                    outcomes[page.page_id] = got
            tell(on_page, page, outcomes[page.page_id])

        result = [outcomes[p.page_id] for p in pages]
        summary = RunSummary(tuple(result), self.colorizer.weights_id, self.colorizer.trained, 0.0, engine.workers)
        ws.finish_run(run_id, {k: v for k, v in summary.to_json().items() if k not in ("outcomes", "seconds")})
        return result

    @staticmethod
    def _fail(ws: Workspace, page: Page, reason: str) -> PageOutcome:
        name = Path(ws.page_name(page.page_id)).name
        reason = " ".join(reason.split())  # one line, whatever the exception said
        reason = reason if reason.startswith(name) else f"{name}: {reason}"
        ws.save_page_result(page.page_id, "failed", "failed", None, reason=reason)
        return PageOutcome(page.page_id, "failed", None, reason)

    def _fail_task(self, ws: Workspace, page: Page, failure: TaskFailure, run_id: int) -> PageOutcome:
        if failure.expected:
            return self._fail(ws, page, failure.message)
        log = ws.root / "logs" / f"run-{run_id}-{page.short_id}.txt"
        atomic_write_text(log, failure.traceback or failure.message)
        return self._fail(ws, page, f"{failure.message} (details: {log})")


class TaskFailed(PipelineError):
    """A task run in this process failed (see ``engine.TaskFailure``); ``failure`` says how."""

    def __init__(self, failure: TaskFailure):
        super().__init__(failure.message)
        self.failure = failure


def _in_process(fn, models: Models, task):
    with task_threads():
        return run_task(fn, models, task)


def _unwrap(result):
    """A task's result in this process; a TaskFailure raises TaskFailed."""
    if isinstance(result, TaskFailure):
        raise TaskFailed(result)
    return result


def _format_exc() -> str:
    import traceback

    return traceback.format_exc()


class _run_lock:
    """Holds WS/run.lock (flock) for a run: two runs on one workspace would overwrite each other's work. The
    kernel releases it when the process dies, so a killed run never leaves the workspace locked."""

    def __init__(self, ws: Workspace):
        self.path = ws.root / "run.lock"
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise WorkspaceError(f"{self.path}: cannot lock the workspace for a run ({exc.strerror})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise WorkspaceError(f"{self.path.parent}: another run is using this workspace; wait for it to finish") \
                from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _remove_stale_partial_files(ws: Workspace):
    """Temporary files of writes a killed run left behind (``.name.xxx.part.ext``, see fsutil.atomic_path)."""
    for folder in (ws.root / "output", ws.root / "cache", ws.root / "logs", ws.root / "originals"):
        if folder.is_dir():
            for path in folder.rglob(".*.part*"):
                path.unlink(missing_ok=True)


# --- compositing: the one place a page is composed (a run, and the colour-layer export) ----------------------


def compose_key(panel_keys: list[str], ident: PageDetections, config: PipelineConfig) -> str:
    """The cache key of a composed page: its panels' keys, its text boxes and the compose settings."""
    cc = config.colorize
    return cache_key("compose", COMPOSE_VERSION, panel_keys, [list(t.box) for t in ident.texts],
                     cc.blend, cc.max_darken)


def compose_colorized(gray: np.ndarray, ident: PageDetections, colorized: list, config: PipelineConfig,
                      hint_points=()):
    """Compose a page from its ColorizedPanel list (panel -1 = the page pass) -> layout ComposedPage.

    With the flat blend, paper takes colour on the named characters' figures and within HINT_FLAT_RADIUS of
    each hint point ``(x, y)`` (page px): where a reference or a user put the colour. Elsewhere (backgrounds
    coloured from a scene reference, gutters, margins) paper stays white.
    """
    from layout.compose import compose_page

    cc = config.colorize
    panels = [c for c in colorized if c.panel >= 0]
    page_pass = next((c for c in colorized if c.panel == -1), None)
    areas = [(c.box, c.mask) for c in ident.characters if c.identity]
    r = max(4, int(round(HINT_FLAT_RADIUS * max(ident.width, ident.height))))
    for x, y in sorted(set((int(x), int(y)) for x, y in hint_points)):
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        areas.append(((x - r, y - r, x + r + 1, y + r + 1), xx ** 2 + yy ** 2 <= r * r))
    return compose_page(gray, ident.panels_in_order(), panels, texts=ident.texts, page_pass=page_pass,
                        blend=cc.blend, max_darken=cc.max_darken, flat_areas=areas)


HINT_FLAT_RADIUS = 0.02  # of the page's long side: the paper around a hint point that takes its colour
