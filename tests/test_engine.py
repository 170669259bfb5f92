"""Worker processes: the same pages with any number of workers, a page that kills its worker fails alone, the
driver stays the only writer of the workspace, one run per workspace at a time."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from manga_pipeline.cli import main
from manga_pipeline.synthetic import generate_chapter, write_chapter


def invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    # pages large enough that torch splits its convolutions across threads (tiny ones never are): a result that
    # depended on the thread count would show here
    root = tmp_path_factory.mktemp("chapter")
    write_chapter(generate_chapter(3, seed=31, size=(900, 1280)), root)
    return root


def test_two_workers_colour_the_chapter_exactly_as_one(tmp_path, chapter):
    outs = {}
    for workers in (1, 2):
        ws = tmp_path / f"ws{workers}"
        invoke("init", ws)
        for ref in sorted((chapter / "references").glob("*.png")):
            invoke("character", "add", ref.stem, "--reference", ref, "-w", ws)
        invoke("add", "-w", ws, chapter / "pages")
        r = invoke("run", "-w", ws, "--workers", workers)
        assert "3 pages: 3 done (0 unchanged)" in r.stdout and f"{workers} worker" in r.stdout
        assert "colouring" in r.stderr  # the progress bar
        outs[workers] = _tree(ws / "output")
    assert len(outs[1]) == 3 and outs[1] == outs[2]  # pixel for pixel, byte for byte
    # a second run with workers finds everything done and starts no process
    report = json.loads(invoke("run", "-w", tmp_path / "ws2", "--workers", 2, "--json").stdout)
    assert report["cached"] == 3 and report["workers"] == 2


class DyingColorizer:
    """Colours nothing and kills the worker process that gets an all-black page (a stand-in for a crash in
    native code or the kernel's OOM killer). Picklable: workers get it through the pipeline's ModelFactory."""

    weights_id = "dying-test"
    trained = False

    def __init__(self, driver_pid: int):
        self.driver_pid = driver_pid

    def colorize_panel(self, gray, regions=(), scene=None, hints=(), anchor=False, anchor_l_weight=1.5):
        if gray.max() < 10 and os.getpid() != self.driver_pid:
            os._exit(9)
        return np.zeros((*gray.shape, 2), np.float32)


def test_a_page_that_kills_its_worker_fails_alone(tmp_path, chapter):
    from PIL import Image

    from manga_pipeline.cli import add_inputs
    from manga_pipeline.pipeline import Pipeline
    from manga_pipeline.workspace import Workspace

    black = tmp_path / "in" / "page_001_black.png"
    black.parent.mkdir()
    Image.new("L", (600, 850), 0).save(black)
    with Workspace.create(tmp_path / "ws") as ws:
        add_inputs(ws, [chapter / "pages", black])
        summary = Pipeline(colorizer=DyingColorizer(os.getpid())).run(ws, workers=2)
        status = {ws.page_name(o.page_id).rsplit("/", 1)[-1]: o for o in summary.outcomes}
        assert status["page_001_black.png"].status == "failed"
        assert status["page_001_black.png"].reason == ("page_001_black.png: the worker process died while working "
                                                       "on this page (killed, or out of memory)")
        assert [o.status for n, o in status.items() if n != "page_001_black.png"] == ["done"] * 3
        assert summary.count("failed") == 1
        assert ws.page_result(status["page_001_black.png"].page_id)["status"] == "failed"


def test_a_second_run_on_the_same_workspace_is_refused(tmp_path, chapter):
    from manga_pipeline.pipeline import _run_lock
    from manga_pipeline.workspace import Workspace

    ws_dir = tmp_path / "ws"
    invoke("init", ws_dir)
    with Workspace.open(ws_dir) as ws, _run_lock(ws):
        r = invoke("run", "-w", ws_dir, code=1)
    assert "another run is using this workspace" in r.output
    invoke("run", "-w", ws_dir)  # the lock went with the first run
