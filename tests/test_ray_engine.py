"""`manga-color run --engine ray` on a Ray head started here (127.0.0.1, 2 CPUs): a worker and then the driver are
killed during a series run, and the outputs still equal a local run's, pixel for pixel, none lost or doubled."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from manga_pipeline.synthetic import generate_series, write_series
from tests.clihelp import invoke, read_pngs

PAGES = 3  # per chapter


def test_engine_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as on a base install
    write_series(generate_series(1, 1, seed=2, size=(300, 420)), tmp_path)
    r = invoke("run", tmp_path / "series" / "ch01", "--out", tmp_path / "o", "--engine", "ray", ok=False)
    assert r.exit_code == 1 and 'pip install -e ".[ray]"' in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = invoke("run", tmp_path / "series" / "ch01", "--out", tmp_path / "o", "--address", "127.0.0.1:1", ok=False)
    assert r.exit_code == 2 and "--engine ray" in r.output


# --- a real Ray head --------------------------------------------------------------------------------------

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is an optional extra, not installed (pip install -e ".[ray]")')


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out += kids.get(p, [])
        todo += kids.get(p, [])
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _env() -> dict:
    """The environment of the head and of the runs: loopback only, no usage statistics, no cloud probes."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_AUTH_MODE="disabled", no_proxy="127.0.0.1,localhost,::1", NO_PROXY="127.0.0.1,localhost,::1")
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[k] = "http://127.0.0.1:9"  # Ray's usage module asks cloud metadata endpoints even when it is off
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` on 127.0.0.1 with 2 CPUs; stopped (this process tree only) at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert head.poll() is None, head.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    else:
        pytest.fail("the Ray head did not start in 90 s")
    yield head, f"127.0.0.1:{port}"
    tree = _descendants(head.pid)
    _signal([head.pid, *tree], signal.SIGKILL)  # a throw-away head: nothing in it needs a clean stop
    head.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.1)
    shutil.rmtree(temp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Two chapters of three 300x420 pages with one cast, its bank, and the series coloured by the local engine."""
    root = tmp_path_factory.mktemp("rayseries")
    src = write_series(generate_series(2, PAGES, seed=9, size=(300, 420)), root, archives=(1,))
    invoke("init", root / "bankws")
    for ref in sorted((root / "references").glob("*.png")):
        invoke("character", "add", "-w", root / "bankws", ref.stem, "--reference", ref)
    invoke("character", "export", "-w", root / "bankws", root / "bank.zip")
    invoke("run", src, "--out", root / "local", "--bank", root / "bank.zip")
    return root, src


def _done(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM page_results WHERE status='done'").fetchone()[0]
        except sqlite3.OperationalError:  # the tables are being created
            return 0


@needs_ray
def test_series_on_ray_survives_a_killed_worker_and_a_killed_driver(tmp_path, ray_head, series):
    head, address = ray_head
    root, src = series
    out = tmp_path / "ray"
    cmd = [sys.executable, "-c", "from manga_pipeline.cli import main; main()", "run", str(src), "--out", str(out),
           "--bank", str(root / "bank.zip"), "--engine", "ray", "--address", address, "--json"]
    driver = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ch1, ch2 = (out / "chapters" / c / "workspace" / "workspace.sqlite" for c in ("ch01", "ch02"))
    killed_worker = killed_driver = None
    done_at_kill = {}
    deadline = time.time() + 600
    while time.time() < deadline and driver.poll() is None:
        if killed_worker is None and _done(ch1) >= 1:
            workers = [p for p in _descendants(head.pid) if _cmdline(p).startswith("ray::PageWorker")]
            if workers:
                killed_worker = workers[0]
                os.kill(killed_worker, signal.SIGKILL)
                done_at_kill["worker"] = _done(ch1)
        if killed_worker is not None and _done(ch2) >= 1:
            driver.send_signal(signal.SIGKILL)
            killed_driver = driver.pid
            done_at_kill["driver"] = _done(ch2)
            break
        time.sleep(0.05)
    driver.wait(timeout=60)
    err = driver.stderr.read().decode(errors="replace")
    assert killed_worker is not None and done_at_kill["worker"] < PAGES, f"killed too late {done_at_kill}\n{err}"
    assert killed_driver is not None and done_at_kill["driver"] < PAGES, f"killed too late {done_at_kill}\n{err}"
    # the killed worker's pages were sent again within the run: chapter 1 finished before the driver died
    with sqlite3.connect(ch1) as conn:
        assert conn.execute("SELECT status, COUNT(*) FROM page_results GROUP BY status").fetchall() == [
            ("done", PAGES)]

    # the driver was killed: run again, like a local run, and the pages already done are not redone
    r = subprocess.run(cmd, env=_env(), capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    report = json.loads(r.stdout)
    assert report["done"] == 2 * PAGES and report["failed"] == 0
    assert report["cached"] >= PAGES + done_at_kill["driver"]

    for ch in ("ch01", "ch02"):
        got, want = read_pngs(out / "chapters" / ch / "pages"), read_pngs(root / "local" / "chapters" / ch / "pages")
        assert len(got) == len(want) == PAGES  # none lost, none twice
        for k, (a, b) in enumerate(zip(got, want)):
            assert np.array_equal(a, b), f"{ch} page {k} differs from the local run"
        outputs = list((out / "chapters" / ch / "workspace" / "output").iterdir())
        assert len(outputs) == PAGES and all(p.suffix == ".png" for p in outputs)  # no half-written files
