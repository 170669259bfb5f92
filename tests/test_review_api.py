"""The review server's API (Flask test client) on a run synthetic chapter: tokens, traversal, uploads, overrides,
re-runs, export, and the `manga-color review` command."""
from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from manga_pipeline.workspace import Workspace

SIZE = (600, 850)
TOKEN = "test-token-0123456789"
AUTH = {"X-Review-Token": TOKEN}
_TEMPLATE: dict = {}


def built_workspace(dest: Path) -> tuple[Path, Path]:
    """(workspace, chapter folder): a copy of a 2-page synthetic chapter at 600x850 with its cast registered and
    run once. The chapter is built and run once per test process; each caller gets its own workspace copy."""
    if "root" not in _TEMPLATE:
        from manga_pipeline.bank import build_character
        from manga_pipeline.cli import add_inputs
        from manga_pipeline.config import PipelineConfig
        from manga_pipeline.pipeline import Pipeline
        from manga_pipeline.synthetic import generate_chapter, write_chapter

        root = Path(tempfile.mkdtemp(prefix="review-template-"))
        atexit.register(shutil.rmtree, root, True)
        chapter = generate_chapter(2, seed=3, size=SIZE)
        write_chapter(chapter, root / "chapter")
        with Workspace.create(root / "ws") as ws:
            for design in chapter.cast:
                built = build_character(design.name, [root / "chapter" / "references" / f"{design.name}.png"])
                ws.add_character(built.name, built.features, built.descriptors, built.images)
            _, errors = add_inputs(ws, [root / "chapter" / "pages"])
            assert not errors
            summary = Pipeline(PipelineConfig()).run(ws)
            assert summary.count("done") == 2, summary.to_json()
        _TEMPLATE["root"] = root
    root = _TEMPLATE["root"]
    shutil.copytree(root / "ws", dest)
    return dest, root / "chapter"


@pytest.fixture
def env(tmp_path):
    from manga_pipeline.review import create_app

    ws_path, chapter = built_workspace(tmp_path / "ws")
    app = create_app(ws_path, token=TOKEN)
    with Workspace.open(ws_path) as ws:
        pages = ws.pages()
        names = [e.name for e in ws.bank()]
    yield {"app": app, "client": app.test_client(), "ws": ws_path, "chapter": chapter, "pages": pages,
           "names": names, "runner": app.extensions["review"]["runner"]}
    app.extensions["review"]["runner"].close()


def _detail(client, page_id) -> dict:
    r = client.get(f"/api/pages/{page_id}")
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels but carries a few rows: what a decompression bomb looks like up front."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (w + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _panel_with_character(detail: dict) -> tuple[dict, dict]:
    for pn in detail["panel_list"]:
        chars = [c for c in detail["character_list"] if c["panel"] == pn["order"]]
        if chars:
            return pn, chars[0]
    raise AssertionError("no panel with a character on this page")


def _inner_point(pn: dict) -> tuple[int, int]:
    from shapely.geometry import Polygon

    p = Polygon(pn["polygon"]).buffer(-5).representative_point()
    return int(p.x), int(p.y)


# --- the page and its protections ------------------------------------------------------------------------------


def test_index_embeds_the_token_and_sends_protective_headers(env):
    r = env["client"].get("/")
    assert r.status_code == 200
    assert f'<meta name="review-token" content="{TOKEN}">' in r.get_data(as_text=True)
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert env["client"].get("/static/app.js").status_code == 200
    chapter = env["client"].get("/api/chapter").get_json()
    assert [p["page_id"] for p in chapter["pages"]] == [p.page_id for p in env["pages"]]
    assert {p["run_status"] for p in chapter["pages"]} == {"done"}
    assert all(p["status"] in ("done", "needs review") for p in chapter["pages"])
    assert sorted(b["name"] for b in chapter["bank"]) == sorted(env["names"])
    assert all(b["palette"] and all(c.startswith("#") and len(c) == 7 for c in b["palette"]) for b in chapter["bank"])


def test_state_changing_requests_need_the_token(env):
    c, pid = env["client"], env["pages"][0].page_id
    hint = {"x": 100, "y": 100, "color": "#ff0000"}
    for headers in ({}, {"X-Review-Token": "wrong"}, {"X-Review-Token": ""}):
        r = c.post(f"/api/pages/{pid}/hints", json=hint, headers=headers)
        assert r.status_code == 403 and "X-Review-Token" in r.get_json()["error"]
    r = c.post("/api/bank", data={"name": "X"}, content_type="multipart/form-data")
    assert r.status_code == 403
    r = c.post("/api/export", json={"format": "cbz"})
    assert r.status_code == 403
    with Workspace.open(env["ws"]) as ws:
        assert ws.list_overrides() == []
    r = c.post(f"/api/pages/{pid}/hints", json=hint, headers=AUTH)
    assert r.status_code == 200
    oid = r.get_json()["override"]
    assert c.delete(f"/api/pages/{pid}/overrides/{oid}").status_code == 403
    assert c.delete(f"/api/pages/{pid}/overrides/{oid}", headers=AUTH).status_code == 200


def test_requests_for_another_host_name_are_refused(env):
    """A DNS-rebinding page reaches the server under its own host name: it gets nothing."""
    r = env["client"].get("/api/chapter", headers={"Host": "evil.example:8765"})
    assert r.status_code == 403
    assert env["client"].get("/api/chapter", headers={"Host": "127.0.0.1:8765"}).status_code == 200


@pytest.mark.parametrize("url", [
    "/api/pages/../../workspace.sqlite",
    "/api/pages/..%2f..%2fworkspace.sqlite/original.png",
    "/api/pages/%2fetc%2fpasswd/original.png",
    "/api/pages//etc/passwd/original.png",
    "/api/pages/" + "0" * 64 + "/original.png",
    "/api/pages/" + "0" * 64,
    "/api/pages/" + "A" * 64 + "/colored.png",
    "/api/bank/..%2f..%2fworkspace.sqlite/images/0.png",
    "/api/bank/../../workspace.sqlite/images/0.png",
    "/api/bank/Nobody/images/0.png",
    "/static/../workspace.sqlite",
    "/static/%2e%2e/%2e%2e/workspace.sqlite",
    "/static/..%2fapp.py",
    "/api/export/..%2f..%2fworkspace.sqlite",
    "/api/export/chapter.cbz",  # nothing exported yet
])
def test_no_file_outside_the_api_can_be_reached(env, url):
    r = env["client"].get(url)
    assert r.status_code in (400, 403, 404), (url, r.status_code)
    assert b"SQLite format" not in r.data and b"root:" not in r.data


def test_unknown_ids_and_indexes_are_404_with_a_reason(env):
    c = env["client"]
    pid = env["pages"][0].page_id
    name = env["names"][0]
    assert c.get(f"/api/bank/{name}/images/0.png").status_code == 200
    assert c.get(f"/api/bank/{name}/images/9.png").status_code == 404
    r = c.post("/api/pages/" + "f" * 64 + "/hints", json={"x": 1, "y": 1, "color": "#ffffff"}, headers=AUTH)
    assert r.status_code == 404 and "no page" in r.get_json()["error"]
    r = c.post(f"/api/pages/{pid}/panels/99/lock", json={"locked": True}, headers=AUTH)
    assert r.status_code == 404 and "no panel 99" in r.get_json()["error"]
    assert c.delete(f"/api/pages/{pid}/overrides/12345", headers=AUTH).status_code == 404
    assert c.get("/api/jobs/999").status_code == 404


# --- uploads -----------------------------------------------------------------------------------------------------


def _upload(c, name, files: dict, mode="new"):
    data = {"name": name, "mode": mode}
    for kind, (blob, filename) in files.items():
        data[kind] = (io.BytesIO(blob), filename)
    return c.post("/api/bank", data=data, content_type="multipart/form-data", headers=AUTH)


@pytest.mark.parametrize("blob, filename, status, message", [
    (b"hello, this is not an image\n" * 20, "notes.png", 400, "not an image file"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.svg", 400, "not an image file"),
    (_png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[:-300], "cut.png", 400, "corrupt"),
    (_png_header_only(9000, 9000), "bomb.png", 400, "decompression bomb"),
    (_png_header_only(30000, 30000), "bigger-bomb.png", 400, "decompression bomb"),
    (b"", "empty.png", 400, "empty"),
])
def test_bad_uploads_are_refused_with_a_clear_message(env, blob, filename, status, message):
    r = _upload(env["client"], "Intruder", {"reference": (blob, filename)})
    assert r.status_code == status
    assert message in r.get_json()["error"]
    with Workspace.open(env["ws"]) as ws:
        assert "Intruder" not in [e.name for e in ws.bank()]


def test_uploads_over_20_mb_are_refused(env):
    blob = b"\x89PNG\r\n\x1a\n" + b"\x00" * (21 * 2**20)
    r = _upload(env["client"], "Huge", {"reference": (blob, "huge.png")})
    assert r.status_code == 413
    assert "20 MB" in r.get_json()["error"]


def test_register_a_character_and_see_its_palette(env):
    c = env["client"]
    ref = (env["chapter"] / "references" / f"{env['names'][0]}.png").read_bytes()
    r = _upload(c, "Guest", {"reference": (ref, "../../evil name.png")})
    assert r.status_code == 200, r.get_json()
    ch = r.get_json()["character"]
    assert ch["name"] == "Guest" and ch["references"] == 1 and ch["has_reference"]
    assert len(ch["palette"]) >= 3 and all(len(h) == 7 and h[0] == "#" for h in ch["palette"])
    with Workspace.open(env["ws"]) as ws:
        entry = next(e for e in ws.bank() if e.name == "Guest")
        # stored by content hash inside the bank folder, whatever the uploaded file was called
        assert all(p.parent == (env["ws"] / "bank") for _, p in entry.images)
    assert _upload(c, "Guest", {"reference": (ref, "r.png")}).status_code == 409
    sample = np.asarray(Image.open(io.BytesIO(ref)).convert("L"))
    r = _upload(c, "Guest", {"sample": (_png(sample), "s.png")}, mode="add")
    assert r.status_code == 200
    assert (r.get_json()["character"]["references"], r.get_json()["character"]["samples"]) == (1, 1)
    assert c.get("/api/bank/Guest/images/1.png").status_code == 200
    r = _upload(c, "bad/name", {"reference": (ref, "r.png")})
    assert r.status_code == 400 and "not valid" in r.get_json()["error"]


# --- overrides ---------------------------------------------------------------------------------------------------


def test_identity_override_from_the_page_is_stored_in_the_workspace(env):
    c, pid, name = env["client"], env["pages"][0].page_id, env["names"][1]
    d = _detail(c, pid)
    _, ch = _panel_with_character(d)
    r = c.post(f"/api/pages/{pid}/identity", json={"box": ch["box"], "name": name}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    with Workspace.open(env["ws"]) as ws:
        ids = ws.overrides(pid).identities
    assert [(o.box, o.name) for o in ids] == [(tuple(ch["box"]), name)]
    # a second word on the same box replaces the first; null = "no registered character"
    r = c.post(f"/api/pages/{pid}/identity", json={"box": ch["box"], "name": None}, headers=AUTH)
    with Workspace.open(env["ws"]) as ws:
        ids = ws.overrides(pid).identities
    assert [(o.box, o.name) for o in ids] == [(tuple(ch["box"]), None)]
    for bad, status, words in (
        ({"box": ch["box"], "name": "Nobody"}, 400, "no character named"),
        ({"box": [0, 0, 9999, 10], "name": name}, 400, "past the page"),
        ({"box": "../../etc", "name": name}, 400, "4 numbers"),
        ({"box": ch["box"], "name": "a/b"}, 400, "not valid"),
    ):
        r = c.post(f"/api/pages/{pid}/identity", json=bad, headers=AUTH)
        assert r.status_code == status and words in r.get_json()["error"], r.get_json()
    assert c.post(f"/api/pages/{pid}/identity", data="x", headers=AUTH).status_code == 400


def test_new_character_from_a_box_is_registered_from_the_page_crop(env):
    c, pid = env["client"], env["pages"][0].page_id
    _, ch = _panel_with_character(_detail(c, pid))
    r = c.post(f"/api/pages/{pid}/identity", json={"box": ch["box"], "name": "Stranger", "new_character": True},
               headers=AUTH)
    assert r.status_code == 200, r.get_json()
    with Workspace.open(env["ws"]) as ws:
        entry = next(e for e in ws.bank() if e.name == "Stranger")
        assert [k for k, _ in entry.images] == ["sample"]
        with Image.open(entry.images[0][1]) as im:
            x0, y0, x1, y1 = ch["box"]
            assert im.size == (x1 - x0, y1 - y0) and im.mode == "L"
        assert [(o.box, o.name) for o in ws.overrides(pid).identities] == [(tuple(ch["box"]), "Stranger")]
    r = c.post(f"/api/pages/{pid}/identity", json={"box": ch["box"], "name": "Stranger", "new_character": True},
               headers=AUTH)
    assert r.status_code == 409


def test_hints_are_added_and_removed(env):
    c, pid = env["client"], env["pages"][0].page_id
    other = env["pages"][1].page_id
    d = _detail(c, pid)
    pn, _ = _panel_with_character(d)
    x, y = _inner_point(pn)
    r = c.post(f"/api/pages/{pid}/hints", json={"x": x, "y": y, "color": "#FF8800"}, headers=AUTH)
    assert r.status_code == 200
    oid = r.get_json()["override"]
    hints = r.get_json()["page"]["hints"]
    assert hints == [{"id": oid, "x": x, "y": y, "color": "#ff8800", "panel": pn["order"]}]
    with Workspace.open(env["ws"]) as ws:
        assert [(h.x, h.y, h.color) for h in ws.overrides(pid).hints] == [(x, y, "#ff8800")]
    assert c.delete(f"/api/pages/{other}/overrides/{oid}", headers=AUTH).status_code == 404  # not that page's
    for bad, words in (({"x": x, "y": y, "color": "red"}, "#RRGGBB"), ({"x": 5000, "y": y, "color": "#000000"}, "outside"),
                       ({"x": "a", "y": y, "color": "#000000"}, "integer")):
        r = c.post(f"/api/pages/{pid}/hints", json=bad, headers=AUTH)
        assert r.status_code == 400 and words in r.get_json()["error"]
    r = c.delete(f"/api/pages/{pid}/overrides/{oid}", headers=AUTH)
    assert r.status_code == 200 and r.get_json()["page"]["hints"] == []
    with Workspace.open(env["ws"]) as ws:
        assert ws.overrides(pid).hints == ()


def test_lock_accept_and_reference_swap(env):
    c, pid, name = env["client"], env["pages"][0].page_id, env["names"][2]
    d = _detail(c, pid)
    orders = [p["order"] for p in d["panel_list"]]
    r = c.post(f"/api/pages/{pid}/panels/{orders[0]}/lock", json={"locked": True}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["page"]["panel_list"][0]["locked"]
    c.post(f"/api/pages/{pid}/panels/{orders[0]}/lock", json={"locked": True}, headers=AUTH)  # idempotent
    with Workspace.open(env["ws"]) as ws:
        assert ws.overrides(pid).locked_panels == {orders[0]}
        assert sum(o["kind"] == "lock" for o in ws.list_overrides(pid)) == 1
    c.post(f"/api/pages/{pid}/panels/{orders[0]}/lock", json={"locked": False}, headers=AUTH)
    with Workspace.open(env["ws"]) as ws:
        assert ws.overrides(pid).locked_panels == frozenset()

    r = c.post(f"/api/pages/{pid}/accept", json={"locked": True}, headers=AUTH)
    assert r.get_json()["page"]["status"] == "accepted"
    status = {p["page_id"]: p["status"] for p in c.get("/api/chapter").get_json()["pages"]}
    assert status[pid] == "accepted" and status[env["pages"][1].page_id] != "accepted"
    r = c.post(f"/api/pages/{pid}/accept", json={"locked": False}, headers=AUTH)
    assert r.get_json()["page"]["status"] != "accepted"

    r = c.post(f"/api/pages/{pid}/panels/{orders[1]}/reference", json={"name": name}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["page"]["panel_list"][1]["reference"] == name
    r = c.post(f"/api/pages/{pid}/panels/-1/reference", json={"name": name}, headers=AUTH)
    assert r.status_code == 400 and "outside panels" in r.get_json()["error"]
    with Workspace.open(env["ws"]) as ws:
        assert dict(ws.overrides(pid).panel_references) == {orders[1]: name}
    r = c.post(f"/api/pages/{pid}/panels/{orders[1]}/reference", json={"name": "Nobody"}, headers=AUTH)
    assert r.status_code == 400 and "colour reference" in r.get_json()["error"]
    c.post(f"/api/pages/{pid}/panels/{orders[1]}/reference", json={"name": None}, headers=AUTH)
    with Workspace.open(env["ws"]) as ws:
        assert dict(ws.overrides(pid).panel_references) == {}


def test_overrides_made_with_the_cli_show_in_the_review_page(env):
    from manga_pipeline.cli import main

    pid = env["pages"][1].page_id
    r = CliRunner().invoke(main, ["override", "hint", "1", "120", "200", "#00ff00", "-w", str(env["ws"])])
    assert r.exit_code == 0, r.output
    hints = _detail(env["client"], pid)["hints"]
    assert [(h["x"], h["y"], h["color"]) for h in hints] == [(120, 200, "#00ff00")]


# --- re-run, run, export -----------------------------------------------------------------------------------------


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def test_rerun_recolours_the_changed_panel_and_run_and_export_replay_it(env):
    from manga_pipeline.cli import main

    c, pid, runner = env["client"], env["pages"][0].page_id, env["runner"]
    d = _detail(c, pid)
    pn, ch = _panel_with_character(d)
    out = env["ws"] / "output"
    before = {p.name: _read(p) for p in out.glob("*.png")}
    c.post(f"/api/pages/{pid}/identity", json={"box": ch["box"], "name": env["names"][0]}, headers=AUTH)
    x, y = _inner_point(pn)
    c.post(f"/api/pages/{pid}/hints", json={"x": x, "y": y, "color": "#ff2000"}, headers=AUTH)

    r = c.post(f"/api/pages/{pid}/rerun", json={"panel": pn["order"]}, headers=AUTH)
    assert r.status_code == 202
    job = runner.wait(r.get_json()["id"])
    assert job.state == "done", job.to_json()
    assert c.get(f"/api/jobs/{job.id}").get_json()["progress"] == 1.0
    # only the changed panel (and the page-level pass, or an overlapping panel, the hint also falls in) was
    # recoloured
    panels = {s for s in job.recomputed if s.startswith("panel")}
    holding_hint = {f"panel {p['order']}" for p in d["panel_list"]
                    if p["box"][0] <= x < p["box"][2] and p["box"][1] <= y < p["box"][3]}
    assert f"panel {pn['order']}" in panels and panels <= {f"panel {pn['order']}", "panel -1"} | holding_hint
    assert len(panels) < len(d["panel_list"]) + 1  # not the whole page
    assert "compose" in job.recomputed
    assert job.others == {}  # the other page came from the cache
    after_detail = _detail(c, pid)
    assert after_detail["version"] != d["version"]
    name = next(n for n in before if pid[:12] in n)
    after = _read(out / name)
    x0, y0, x1, y1 = pn["box"]
    diff = np.abs(after - before[name]).sum(axis=2)
    assert diff[y0:y1, x0:x1].mean() > 1.0  # the panel changed colour ...
    others = [p for p in d["panel_list"] if p["order"] != pn["order"]]
    far = max(others, key=lambda p: abs(p["box"][1] - y0))
    fx0, fy0, fx1, fy1 = far["box"]
    assert diff[fy0:fy1, fx0:fx1].mean() < diff[y0:y1, x0:x1].mean() / 4  # ... far panels hardly at all
    png = c.get(f"/api/pages/{pid}/colored.png")
    assert png.status_code == 200 and png.data == (out / name).read_bytes()

    # `manga-color run` replays the same overrides: nothing is left to recompute
    r = CliRunner().invoke(main, ["run", "-w", str(env["ws"]), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout[r.stdout.index("{"):])
    assert (report["done"], report["cached"]) == (2, 2)
    assert np.array_equal(_read(out / name), after)

    # a locked panel keeps its colours when more changes come
    c.post(f"/api/pages/{pid}/panels/{pn['order']}/lock", json={"locked": True}, headers=AUTH)
    c.post(f"/api/pages/{pid}/hints", json={"x": x, "y": y, "color": "#0040ff"}, headers=AUTH)
    job = runner.wait(c.post(f"/api/pages/{pid}/rerun", json={"panel": None}, headers=AUTH).get_json()["id"])
    assert job.state == "done" and f"panel {pn['order']}" not in job.recomputed

    # export through the page: the CBZ holds the re-run page
    r = c.post("/api/export", json={"format": "cbz"}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["written"] == 2 and r.get_json()["missing"] == []
    dl = c.get(r.get_json()["download"])
    assert dl.status_code == 200 and "attachment" in dl.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(dl.data)) as zf:
        assert sorted(zf.namelist()) == ["0001.png", "0002.png", "ComicInfo.xml"]
        assert zf.read("0001.png") == (out / name).read_bytes()
    r = c.post("/api/export", json={"format": "png"}, headers=AUTH)
    assert r.status_code == 200 and sorted(p.name for p in (env["ws"] / "export" / "pages").iterdir()) == [
        "0001.png", "0002.png"]
    assert c.post("/api/export", json={"format": "../../x"}, headers=AUTH).status_code == 400


def test_a_page_that_fails_to_rerun_reports_why(env):
    page = env["pages"][1]
    # a hint makes the page's colours stale, so the re-run must read the page again ...
    x, y = _inner_point(_detail(env["client"], page.page_id)["panel_list"][0])
    env["client"].post(f"/api/pages/{page.page_id}/hints", json={"x": x, "y": y, "color": "#ff2000"}, headers=AUTH)
    page.source.write_bytes(b"garbage")  # ... and the workspace copy got damaged
    r = env["client"].post(f"/api/pages/{page.page_id}/rerun", json={}, headers=AUTH)
    job = env["runner"].wait(r.get_json()["id"])
    assert job.state == "failed" and ("corrupt" in job.error or "not an image" in job.error), job.to_json()
    pages = env["client"].get("/api/chapter").get_json()["pages"]
    assert next(p for p in pages if p["page_id"] == page.page_id)["status"] == "failed"


# --- the command -------------------------------------------------------------------------------------------------


def test_review_command_prints_its_loopback_url_and_serves_the_page(tmp_path):
    from manga_pipeline.cli import main

    r = CliRunner().invoke(main, ["review", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "--host" in r.output
    r = CliRunner().invoke(main, ["review", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "not a workspace" in r.output
    Workspace.create(tmp_path / "ws").close()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from manga_pipeline.cli import main; main()", "review", str(tmp_path / "ws"),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split(" at ")[1].split()[0]
        html = urllib.request.urlopen(url, timeout=10).read().decode()
        assert 'name="review-token"' in html
        req = urllib.request.Request(url + "api/export", data=b'{"format": "cbz"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=10)
