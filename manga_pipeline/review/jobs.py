"""Re-running pages for the review server: one worker thread, one pipeline loaded once, one job at a time.

A job is exactly `manga-color run` on the workspace (``Pipeline.run(ws)``): characters are named chapter-wide,
so a re-run of one page alone could name them differently from the next full run. Everything is cached, so only
what an override changed is recomputed (an override on one panel recolours that panel, other pages come from the
cache), locked panels keep their colours, and a failure is recorded on its page with the reason. The job reports
the outcome of the page it was asked for; the page polls ``Job.to_json()`` for progress.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..workspace import Workspace

MAX_KEPT_JOBS = 200


@dataclass
class Job:
    id: int
    page_id: str
    panel: int | None  # the panel the user asked for (None: the whole page); only changed panels recompute
    state: str = "queued"  # queued -> running -> done | failed
    progress: float = 0.0  # 0..1
    message: str = "waiting for the worker"
    recomputed: list[str] = field(default_factory=list)  # stages that ran for this page
    others: dict[str, list[str]] = field(default_factory=dict)  # other pages that recomputed something
    error: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "page_id": self.page_id, "panel": self.panel, "state": self.state,
                "progress": round(self.progress, 3), "message": self.message, "recomputed": list(self.recomputed),
                "others": {k: list(v) for k, v in self.others.items()}, "error": self.error, "seconds": round((self.finished or time.time()) - self.created, 2)}


class _CountingColorizer:
    """Forwards to the real colorizer and reports every panel it colours (progress for the page)."""

    def __init__(self, inner, on_panel: Callable[[], None]):
        self._inner = inner
        self._on_panel = on_panel

    def colorize_panel(self, *args, **kwargs):
        out = self._inner.colorize_panel(*args, **kwargs)
        self._on_panel()
        return out

    def __getattr__(self, name):
        return getattr(self._inner, name)


class JobRunner:
    """``submit(page_id, panel)`` queues a re-run; ``get(id)`` reads its state. ``pipeline_factory`` builds the
    Pipeline once, in the worker, on the first job."""

    def __init__(self, ws_root: Path, pipeline_factory: Callable[[], object]):
        self.ws_root = Path(ws_root)
        self._factory = pipeline_factory
        self._pipeline = None
        self._queue: queue.Queue = queue.Queue()
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()  # one pipeline, one page at a time
        self._thread: threading.Thread | None = None

    def submit(self, page_id: str, panel: int | None = None) -> Job:
        with self._lock:
            for job in self._jobs.values():  # a page already waiting is not queued twice
                if job.page_id == page_id and job.state == "queued":
                    return job
            job = Job(next(self._ids), page_id, panel)
            self._jobs[job.id] = job
            done = [j for j in self._jobs.values() if j.state in ("done", "failed")]
            for old in done[:-MAX_KEPT_JOBS] if len(done) > MAX_KEPT_JOBS else []:
                del self._jobs[old.id]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="review-jobs", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def active(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.state in ("queued", "running")]

    def wait(self, job_id: int, timeout: float = 120.0) -> Job:
        """Block until the job finishes (for scripts and tests)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            job = self.get(job_id)
            if job is None or job.state in ("done", "failed"):
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} did not finish in {timeout:.0f} s")

    def close(self):
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    # --- the worker -----------------------------------------------------------------------------------------

    def _work(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._run_lock:
                self._run(job)

    def _set(self, job: Job, **kw):
        with self._lock:
            for k, v in kw.items():
                setattr(job, k, v)

    def _run(self, job: Job):
        self._set(job, state="running", progress=0.02, message="starting")
        try:
            if self._pipeline is None:
                self._set(job, message="loading the models (first re-run only)")
                self._pipeline = self._factory()
            pipeline = self._pipeline
            with Workspace.open(self.ws_root) as ws:
                ws.page(job.page_id)  # still there?
                n_pages = len(ws.pages())
                seen = [0, 0]  # pages finished, panels coloured

                def on_panel():
                    seen[1] += 1
                    self._set(job, message=f"recoloured {seen[1]} panel{'s' if seen[1] > 1 else ''}")

                def on_page(page, outcome):
                    seen[0] += 1
                    self._set(job, progress=0.15 + 0.8 * seen[0] / max(1, n_pages),
                              message=f"page {seen[0]}/{n_pages} {outcome.status}")

                self._set(job, progress=0.05, message="detecting and naming characters (cached when unchanged)")
                inner = pipeline.colorizer
                pipeline.colorizer = _CountingColorizer(inner, on_panel)
                try:
                    summary = pipeline.run(ws, on_page=on_page)
                finally:
                    pipeline.colorizer = inner
            outcome = next(o for o in summary.outcomes if o.page_id == job.page_id)
            others = {o.page_id: list(o.recomputed) for o in summary.outcomes
                      if o.page_id != job.page_id and o.recomputed}
            if outcome.status == "failed":
                self._set(job, state="failed", progress=1.0, message="failed", error=outcome.reason, others=others,
                          finished=time.time())
            else:
                what = ", ".join(outcome.recomputed) or "nothing changed"
                self._set(job, state="done", progress=1.0, message=f"done: {what}", others=others,
                          recomputed=list(outcome.recomputed), finished=time.time())
        except Exception as exc:  # the worker survives any one job; the page shows the reason
            self._set(job, state="failed", progress=1.0, message="failed", error=f"{type(exc).__name__}: {exc}",
                      finished=time.time())
