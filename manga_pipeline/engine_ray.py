"""Pages on a Ray cluster (issue 8): the task functions of ``engine`` run by Ray actors.

Each worker is a Ray actor (``PageWorker``) that builds the models once, in its constructor, and then runs
``run_task(fn, models, task)`` for every page it is given; the driver (``Pipeline.run``) stays the only writer of
the workspace database. Tasks carry paths (the page's original, the output image), so every node must see the
workspace at the same path: one machine, or a shared file system for ``--address``.

Failures: an actor that dies (killed, out of memory, its node lost) is restarted by Ray and the pages it held
are sent again (``max_task_retries``); a page that kills its worker ``RETRIES + 1`` times in a row is reported
failed, and the run goes on. Outputs are written atomically to a path fixed by the page, so a retried page
leaves one output file, never two or half of one. A driver killed mid-run takes a head it started down with it
(its workers at once; Ray's two agent processes notice within a minute and exit) and resumes, like a local run,
from what the workspace holds; on a cluster (``address``) Ray ends a dead driver's actors.

Network: without ``address`` the engine starts a head of its own bound to 127.0.0.1, without dashboard and with
usage statistics off. Ray 2.60's usage-statistics module still asks cloud metadata endpoints (169.254.169.254,
metadata.google.internal) where the instance runs, even when statistics are off; the head's processes are
started with HTTP sent to a closed loopback port, so those requests fail on this machine and nothing is sent.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .engine import TASK_THREADS, ModelFactory, TaskFailure, available_cores, init_worker, run_task

RETRIES = 2  # a page is sent again this many times when its worker dies under it
DEPTH = 2    # pages queued per actor: the next page is already there when one finishes


class RayEngineError(RuntimeError):
    """Ray is missing, the cluster cannot be reached, or it cannot run the pages; the message says what to do."""


def _import_ray(local_head: bool):
    if local_head and "ray" not in sys.modules:
        # Ray binds a node's services to the address it would give other nodes; a local head must stay on
        # loopback (read once, when ray is imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if local_head:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's default for a new head, said once, not warned
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise RayEngineError('--engine ray needs Ray: pip install -e ".[ray]"') from None
    return ray


@contextmanager
def _http_to_closed_loopback_port():
    """Processes started inside inherit HTTP(S) proxies pointing at a loopback port nobody listens on."""
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused at once
    proxy = f"http://127.0.0.1:{blocker.getsockname()[1]}"
    names = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy,
                      no_proxy="127.0.0.1,localhost,::1", NO_PROXY="127.0.0.1,localhost,::1")
    try:
        yield blocker
    except BaseException:
        blocker.close()
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class PageWorker:
    """A Ray actor's body: models built once (``factory()``), then any number of tasks, each with
    ``TASK_THREADS`` threads like everywhere else (so pages come out pixel for pixel as a local run's)."""

    def __init__(self, factory: ModelFactory):
        init_worker(TASK_THREADS)
        self.models = factory()

    def run(self, fn: Callable, task):
        return run_task(fn, self.models, task)

    def check_paths(self, read_dirs: list[str], write_dirs: list[str]) -> tuple[str, list[str]]:
        """(this node's address, the folders it cannot read or write)."""
        import ray

        bad = [d for d in read_dirs if not os.access(d, os.R_OK | os.X_OK)]
        for d in write_dirs:
            p = Path(d)
            while not p.exists() and p != p.parent:
                p = p.parent
            if not os.access(p, os.W_OK | os.X_OK):
                bad.append(d)
        return ray.util.get_node_ip_address(), bad

    def pid(self) -> int:
        return os.getpid()


def _dirs(tasks) -> tuple[list[str], list[str]]:
    read = sorted({str(Path(t.source).parent) for t in tasks if getattr(t, "source", None)})
    write = sorted({str(Path(t.output).parent) for t in tasks if getattr(t, "output", None)})
    return read, write


class RayEngine:
    """Run task functions on Ray actors, one per worker slot; same ``map``/``close`` as ``LocalEngine``.

    address: a running cluster (``ray start --head`` ...); None starts a local head (127.0.0.1) with
    ``local_cpus`` CPUs (default: this machine's cores). workers: actors, each reserving one CPU (default: one
    per CPU of the cluster). The networks run on the CPU (no stage selects a GPU yet), so actors reserve no
    GPU. ``start()`` connects and starts the actors; ``map`` does it when not done yet.
    """

    def __init__(self, factory: ModelFactory, *, address: str | None = None, workers: int | None = None,
                 local_cpus: int | None = None):
        if workers is not None and int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.factory = factory
        self.address = address
        self.requested_workers = workers
        self.local_cpus = local_cpus
        self._ray = None
        self._actors: list = []
        self._started_head = False
        self._blocker = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(wait=exc_type is None)

    @property
    def workers(self) -> int:
        return len(self._actors) if self._actors else (self.requested_workers or 0)

    # --- cluster and actors ---------------------------------------------------------------------------------

    def start(self):
        if self._ray is not None:
            return
        ray = _import_ray(self.address is None)
        if ray.is_initialized():
            raise RayEngineError("Ray is already initialised in this process; run one engine at a time")
        quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        try:
            if self.address is None:
                cpus = self.local_cpus or max(available_cores(), self.requested_workers or 1)
                with _http_to_closed_loopback_port() as blocker:
                    ray.init(address="local", num_cpus=cpus, **quiet)
                self._blocker, self._started_head = blocker, True
                gcs = ray.get_runtime_context().gcs_address
                if not gcs.startswith("127.0.0.1:"):
                    self.close()
                    raise RayEngineError(f"the local Ray head bound {gcs}, not 127.0.0.1 (ray was imported before "
                                         "manga-color could set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0)")
            else:
                ray.init(address=self.address, **quiet)
        except RayEngineError:
            raise
        except Exception as exc:  # connection refused, version mismatch, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray head"
            raise RayEngineError(f"cannot start or reach {where}: {first}") from None
        self._ray = ray
        try:
            self._start_actors()
        except BaseException:
            self.close()
            raise

    def _start_actors(self):
        ray = self._ray
        res = ray.cluster_resources()
        cpus = float(res.get("CPU", 0))
        fit = int(cpus)
        if fit < 1:
            raise RayEngineError(f"the Ray cluster has {cpus:g} CPU(s): a worker needs one")
        n = self.requested_workers or fit
        if n > fit:
            raise RayEngineError(f"--workers {n}: the Ray cluster has {cpus:g} CPUs, room for {fit} workers "
                                 "(one CPU each)")
        actor_cls = ray.remote(PageWorker).options(
            num_cpus=1, num_gpus=0, max_restarts=-1, max_task_retries=RETRIES)
        self._actors = [actor_cls.remote(self.factory) for _ in range(n)]
        try:  # the constructors load the models: a failure there is the run's, not a page's
            ray.get([a.pid.remote() for a in self._actors])
        except ray.exceptions.RayError as exc:
            raise RayEngineError(f"Ray workers could not start: {_reason(exc)}") from None

    def worker_pids(self) -> list[int]:
        """The process id of every live actor (on this machine when the head is local)."""
        self.start()
        return self._ray.get([a.pid.remote() for a in self._actors])

    def _check_paths(self, tasks):
        read, write = _dirs(tasks)
        if not read and not write:
            return
        ray = self._ray
        for node, bad in ray.get([a.check_paths.remote(read, write) for a in self._actors]):
            if bad:
                raise RayEngineError(
                    f"a Ray worker on {node} cannot use {bad[0]}: keep the workspace (or --out) on storage that "
                    "every node mounts at the same path")

    def close(self, wait: bool = True):
        """Release the actors (and the head this engine started). The pages in flight are dropped either way
        (``wait`` is accepted for the engine interface): their outputs are written atomically, so nothing is
        half-written and the next run redoes them."""
        if self._ray is not None:
            for a in self._actors:
                try:
                    self._ray.kill(a)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            self._actors = []
            self._ray.shutdown()
            self._ray = None
        elif self._started_head:
            import ray

            ray.shutdown()
        self._started_head = False
        if self._blocker is not None:
            self._blocker.close()
            self._blocker = None

    # --- running tasks --------------------------------------------------------------------------------------

    def map(self, fn: Callable, tasks: Iterable) -> Iterator[tuple[object, object]]:
        """Yield ``(task, result or TaskFailure)`` for every task as it finishes (completion order)."""
        tasks = list(tasks)
        if not tasks:
            return
        self.start()
        self._check_paths(tasks)
        ray = self._ray
        todo = deque(tasks)
        in_flight: dict = {}  # object ref -> (task, actor index)
        load = [0] * len(self._actors)
        while todo or in_flight:
            while todo and min(load) < DEPTH:
                k = load.index(min(load))
                task = todo.popleft()
                in_flight[self._actors[k].run.remote(fn, task)] = (task, k)
                load[k] += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                task, k = in_flight.pop(ref)
                load[k] -= 1
                try:
                    yield task, ray.get(ref)
                except ray.exceptions.ActorDiedError as exc:  # Ray restarted it and resent the page RETRIES times
                    yield task, TaskFailure(task.page_id, f"{_name(task)}: the Ray worker died each of the "
                                            f"{RETRIES + 1} times it worked on this page (out of memory?)", True,
                                            _reason(exc))
                except ray.exceptions.RayError as exc:
                    yield task, TaskFailure(task.page_id, f"{_name(task)}: Ray could not run this page "
                                            f"({_reason(exc)})", False, str(exc))


def _reason(exc) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _name(task) -> str:
    return getattr(task, "name", None) or task.page_id[:12]
