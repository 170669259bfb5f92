"""Where the per-page work of a chapter run executes: in the driver process, in worker processes, or (later) on Ray.

The split
---------
``Pipeline.run`` (the *driver*) is the only reader-writer of the workspace database. For every page it looks at
the cache and either has the answer already or builds a *task*: a frozen, picklable record that carries
everything the page's heavy work needs (the original's path, the detections, the panel jobs, the chroma of the
panels that are still valid, the output path). A *task function* turns a task into a *result* record:

=====================  ==================  ===================  =============================================
phase                  task                task function         result
=====================  ==================  ===================  =============================================
1 detect + embed       ``PrepareTask``     ``prepare_page``      ``PreparedPage`` (detections, embeddings)
3 colorize + compose   ``RenderTask``      ``render_page``       ``RenderedPage`` (new panel chroma; the page
                                                                 PNG already written to ``task.output``)
=====================  ==================  ===================  =============================================

Task functions are plain module-level functions ``fn(models, task) -> result``. They never open the workspace
database; they read the page's original file and write at most one file, the page's output image, atomically
to the final path named in the task (so a worker killed at any instant leaves the old file or the new one).
The driver stores what a result carries (database rows, cached panel chroma) as results arrive. Phase 2
(naming characters across the whole chapter) needs every page at once and runs in the driver.

A task function that raises does not raise through an engine: :func:`run_task` turns the exception into a
``TaskFailure`` (a one-line reason; the traceback kept for the log), so one bad page never stops a chapter.

Models
------
``Models`` holds the networks a task function uses (detector, identity embedder, colorizer). A
``ModelFactory`` is the picklable recipe for them (the pipeline config, or model objects a caller injected,
e.g. test doubles): a worker calls it once when it starts and reuses the models for every page it gets.

Engines
-------
An engine runs one task function over many tasks and yields ``(task, result_or_TaskFailure)`` pairs as they
finish (completion order, not task order; the driver does not depend on the order, outputs are identical).

Every task runs with ``TASK_THREADS`` (1) torch and OpenCV threads wherever it runs: a convolution's float
result depends on the thread count (the detector's scores and the colorizer's chroma differ in the last bits
between 1 and 2 threads), and a chapter must come out pixel for pixel the same with any number of workers.
Parallelism comes from processes: N workers use N threads in all (keep N <= cores).

* ``LocalEngine(factory, workers=1)`` runs tasks in the calling process, with the driver's own models (its
  thread count is set for each task and restored after).
* ``LocalEngine(factory, workers=N)`` with N > 1 runs them in N worker processes (``spawn``: a script that
  uses it needs the ``if __name__ == "__main__":`` guard), started on first use and reused for both phases of
  a run. Each worker builds its models once and is killed by the kernel when the driver dies (Linux
  ``PR_SET_PDEATHSIG``), so a killed run leaves no orphan writing files. At most N tasks are in flight; a worker
  that dies (killed, out of memory) breaks the pool: the pool is restarted, the tasks that were in flight are
  retried one at a time, and one that kills its worker again is reported as failed.

Writing another engine (Ray, issue 8)
-------------------------------------
Reuse the pieces, not the pool: a Ray actor whose constructor calls ``init_worker(TASK_THREADS)`` then
``factory()`` (models load once per actor), and a method ``run(fn, task)`` that returns
``run_task(fn, models, task)``. Its ``map(fn, tasks)`` yields ``(task, result)`` pairs like LocalEngine's and
``close()`` releases the actors. Tasks carry page paths (``Path``), so workers must see the workspace folder
(one machine, or a shared file system). Pass the engine to ``Pipeline.run(ws, engine=...)``.
"""
from __future__ import annotations

import os
import signal
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

import numpy as np

from .imageio import ImageError, decode_image, write_png
from .records import ColorizedPanel, PageDetections

if TYPE_CHECKING:  # imported lazily at run time: a spawned worker sets its thread counts before torch loads
    from .config import PipelineConfig
    from .pipeline import PanelJob


TASK_THREADS = 1


class TaskError(RuntimeError):
    """A page's task cannot be done for a reason the user can act on (reported as the page's one line)."""


# --- models ---------------------------------------------------------------------------------------------


@dataclass
class Models:
    """The networks a task function uses, built once per process. ``embedder`` may be None until needed."""

    detector: object
    colorizer: object
    embedder: object | None = None

    def get_embedder(self):
        if self.embedder is None:
            from detectors.identify import default_embedder

            self.embedder = default_embedder()
        return self.embedder


@dataclass(frozen=True)
class ModelFactory:
    """A picklable recipe for ``Models``: models given here are used as they are, the others are built from
    ``config`` (detector backend/weights, colorizer weights; the identity embedder is the shipped default)."""

    config: "PipelineConfig"
    detector: object | None = None
    colorizer: object | None = None
    embedder: object | None = None

    def __call__(self) -> Models:
        detector, colorizer = self.detector, self.colorizer
        if detector is None:
            from detectors.yolo import build_detector

            d = self.config.detect
            detector = build_detector(d.backend, rtl=d.rtl, weights=d.weights, figures=d.figures)
        if colorizer is None:
            from colorizer.infer import Colorizer

            colorizer = Colorizer.load(self.config.colorize.weights)
        return Models(detector, colorizer, self.embedder)


# --- tasks and results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareTask:
    """Phase 1 of one page: detect (unless ``detections`` are cached) and embed its characters."""

    page_id: str
    name: str            # the page's display name (its file name), for error lines
    source: Path         # the workspace's byte-exact copy of the original
    detections: PageDetections | None = field(default=None, repr=False)  # cached detections; None = detect


@dataclass(frozen=True)
class PreparedPage:
    """Detections and float32 (n_characters, D) identity embeddings of one page; ``ran``: stages that ran."""

    page_id: str
    detections: PageDetections = field(repr=False)
    embeddings: np.ndarray = field(repr=False)
    detector: str
    embedder: str
    ran: tuple[str, ...]

    def __post_init__(self):
        if self.embeddings.dtype != np.float32 or self.embeddings.ndim != 2:
            raise ValueError("PreparedPage.embeddings must be float32 (n, D)")
        if len(self.embeddings) != len(self.detections.characters):
            raise ValueError("PreparedPage needs one embedding per character")


@dataclass(frozen=True)
class RenderTask:
    """Phase 3 of one page: colour the panels whose chroma is not cached, compose, write ``output``.

    jobs: the page's panel jobs (reading order, then the page pass -1); cached: per job, the stored
    (chroma float32 (h', w', 2), weights id) or None when the panel must be coloured. compose: False when the
    stored output is still valid (only missing panel chroma is recomputed). copy: the page is already in colour
    and is passed through as it is (jobs empty).
    """

    page_id: str
    name: str
    source: Path
    output: Path
    ident: PageDetections | None = field(default=None, repr=False)
    jobs: tuple["PanelJob", ...] = field(default=(), repr=False)
    cached: tuple = field(default=(), repr=False)
    compose: bool = True
    copy: bool = False
    key: str = ""                  # the cache key of the page result this task makes
    settings: object = field(default=None, repr=False)  # the run's PipelineConfig (compose settings)

    def __post_init__(self):
        if len(self.jobs) != len(self.cached):
            raise ValueError("RenderTask needs one cached entry (or None) per job")
        if not self.copy and self.ident is None:
            raise ValueError("RenderTask needs the page's identified detections unless it only copies")


@dataclass(frozen=True)
class NewPanel:
    """A panel coloured by a task: chroma float32 (h', w', 2) (already rounded to the cache's float16)."""

    panel: int
    key: str
    chroma: np.ndarray = field(repr=False)
    weights: str


@dataclass(frozen=True)
class RenderedPage:
    """What a render task did: the panels it coloured (for the driver to cache) and the output it wrote."""

    page_id: str
    output: Path | None
    panels: tuple[NewPanel, ...]
    ran: tuple[str, ...]


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised. ``expected``: a known bad-input error (the message is the whole story); otherwise
    ``traceback`` holds the details for the log."""

    page_id: str
    message: str
    expected: bool
    traceback: str = ""


# --- task functions -------------------------------------------------------------------------------------


def _read(source: Path, name: str):
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise ImageError(f"{name}: the workspace's copy {source} cannot be read ({exc.strerror})") from None
    return decode_image(data, name)


def prepare_page(models: Models, task: PrepareTask) -> PreparedPage:
    """Detect (when not cached) and embed one page's characters."""
    ran = []
    det = task.detections
    gray = None
    if det is None:
        gray = _read(task.source, task.name).gray
        det = models.detector.detect(task.page_id, gray)
        ran.append("detect")
    embedder = models.get_embedder()
    if det.characters:
        from detectors.identify import character_crops

        gray = _read(task.source, task.name).gray if gray is None else gray
        emb = np.asarray(embedder.embed(character_crops(gray, det)), dtype=np.float32)
    else:
        emb = np.zeros((0, embedder.dim), np.float32)
    ran.append("embed")
    return PreparedPage(task.page_id, det, emb, models.detector.name, embedder.weights_id, tuple(ran))


def render_page(models: Models, task: RenderTask) -> RenderedPage:
    """Colour the missing panels of one page, compose it at full resolution and write ``task.output``."""
    from .pipeline import compose_colorized

    img = _read(task.source, task.name)
    if task.copy:
        write_png(task.output, img.rgb)
        return RenderedPage(task.page_id, task.output, (), ("copy",))
    gray = img.gray
    colorized, new, ran = [], [], []
    for job, cached in zip(task.jobs, task.cached):
        if cached is not None:
            chroma, weights = cached
        else:
            x0, y0, x1, y1 = job.box
            chroma = models.colorizer.colorize_panel(
                gray[y0:y1, x0:x1], regions=job.regions, scene=job.scene, hints=job.hints,
                anchor=task.settings.colorize.palette_anchor,
                anchor_l_weight=task.settings.colorize.anchor_l_weight,
                # only a non-default transfer is passed: colorizer stand-ins need not know the keyword
                **({"transfer": task.settings.colorize.transfer} if task.settings.colorize.transfer != "network"
                   else {}))
            # the cache stores float16: compose from exactly what a resumed run will read back
            chroma = np.asarray(chroma, np.float32).astype(np.float16).astype(np.float32)
            weights = models.colorizer.weights_id
            new.append(NewPanel(job.panel, job.key, chroma, weights))
            ran.append(f"panel {job.panel}")
        colorized.append(ColorizedPanel(task.page_id, job.panel, job.box, chroma, weights))
    if task.compose:
        hint_points = [(hx + job.box[0], hy + job.box[1]) for job in task.jobs for hx, hy, _ in job.hints]
        composed = compose_colorized(gray, task.ident, colorized, task.settings, hint_points)
        write_png(task.output, composed.rgb)
        ran.append("compose")
    return RenderedPage(task.page_id, task.output if task.compose else None, tuple(new), tuple(ran))


def run_task(fn: Callable, models: Models, task) -> object:
    """``fn(models, task)``, with any exception turned into a ``TaskFailure`` (what every engine calls)."""
    from .pipeline import PipelineError

    try:
        return fn(models, task)
    except (ImageError, PipelineError, TaskError) as exc:
        return TaskFailure(task.page_id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, True)
    except Exception as exc:  # noqa: BLE001 - reported with its traceback; the chapter goes on
        return TaskFailure(task.page_id, f"{type(exc).__name__}: {exc}".splitlines()[0], False,
                           traceback.format_exc())


# --- engines --------------------------------------------------------------------------------------------


class Engine(Protocol):
    workers: int

    def map(self, fn: Callable, tasks: Iterable) -> Iterator[tuple[object, object]]:
        """Yield ``(task, result or TaskFailure)`` for every task, as they finish."""

    def close(self) -> None: ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def init_worker(threads: int, parent_pid: int | None = None):
    """Process setup for a worker: ``threads`` torch/OpenCV threads; die with the driver (Linux)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if parent_pid is not None:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # not Linux: an orphan finishes its page (atomic writes) and exits when its queue closes
        if os.getppid() != parent_pid:  # the driver died before the line above
            os._exit(1)
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


class task_threads:
    """Within the block, torch and OpenCV use ``TASK_THREADS`` threads (restored after)."""

    def __enter__(self):
        import cv2
        import torch

        self._saved = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(TASK_THREADS)
        cv2.setNumThreads(TASK_THREADS)
        return self

    def __exit__(self, *exc):
        import cv2
        import torch

        torch.set_num_threads(self._saved[0])
        cv2.setNumThreads(self._saved[1])


_WORKER_MODELS: Models | None = None


def _worker_start(factory: ModelFactory, threads: int, parent_pid: int):
    global _WORKER_MODELS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the pool
    init_worker(threads, parent_pid)
    _WORKER_MODELS = factory()


def _worker_run(fn: Callable, task):
    return run_task(fn, _WORKER_MODELS, task)


class LocalEngine:
    """Run tasks in this process (``workers=1``) or in a pool of ``workers`` spawned processes.

    ``models``: the driver's own models, used when running in-process (built from ``factory`` when None).
    Use as a context manager, or call ``close()``; the pool starts on the first ``map`` that needs it.
    """

    def __init__(self, factory: ModelFactory, workers: int = 1, *, models: Models | None = None):
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.factory = factory
        self.workers = int(workers)
        self._models = models
        self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(wait=exc_type is None)

    @property
    def models(self) -> Models:
        if self._models is None:
            self._models = self.factory()
        return self._models

    def _start_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start, initargs=(self.factory, TASK_THREADS, os.getpid()),
        )

    def close(self, wait: bool = True):
        """Stop the pool. ``wait``: let the tasks in flight finish (False when the driver is being interrupted:
        it exits at once and its workers die with it)."""
        if self._pool is not None:
            if not wait:  # Python's exit would still join the workers: end them now (their writes are atomic)
                for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                    proc.kill()
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable, tasks: Iterable) -> Iterator[tuple[object, object]]:
        tasks = list(tasks)
        if self.workers == 1 or len(tasks) <= 1 and self._pool is None:
            # one task is not worth starting processes for; results are identical either way
            for task in tasks:
                with task_threads():
                    result = run_task(fn, self.models, task)
                yield task, result
            return
        yield from self._map_pool(fn, tasks)

    def _map_pool(self, fn: Callable, tasks: list) -> Iterator[tuple[object, object]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        todo, suspects, in_flight = deque(tasks), deque(), {}
        while todo or suspects or in_flight:
            if self._pool is None:
                self._start_pool()
            if suspects:  # after a worker died, the tasks that were in flight run one at a time
                if not in_flight:
                    task = suspects.popleft()
                    in_flight[self._pool.submit(_worker_run, fn, task)] = task
            else:
                while todo and len(in_flight) < self.workers:
                    task = todo.popleft()
                    in_flight[self._pool.submit(_worker_run, fn, task)] = task
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            lost = []
            for fut in finished:
                task = in_flight.pop(fut)
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    lost.append(task)
                elif exc is not None:  # e.g. a result that cannot be sent back
                    yield task, TaskFailure(task.page_id, f"{type(exc).__name__}: {exc}".splitlines()[0], False,
                                            "".join(traceback.format_exception(exc)))
                else:
                    yield task, fut.result()
            if lost:
                lost += in_flight.values()
                in_flight.clear()
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
                if len(lost) == 1:  # it ran alone: it is the one that kills its worker
                    yield lost[0], TaskFailure(lost[0].page_id, f"{_name(lost[0])}: the worker process died while "
                                               "working on this page (killed, or out of memory)", True)
                else:
                    suspects.extend(lost)


def _name(task) -> str:
    return getattr(task, "name", None) or task.page_id[:12]
