"""The review server: a Flask app over one chapter workspace.

Security model (the server edits a workspace on the user's disk):
- it binds 127.0.0.1 unless told otherwise, and answers only requests whose Host header names the address it was
  bound to or loopback (a DNS-rebinding page cannot reach it through another name);
- every state-changing request (POST/DELETE) must carry the per-server random token embedded in the page
  (header ``X-Review-Token``), so another site the user visits cannot forge one; others get 403;
- nothing is ever addressed by a user-supplied path: pages by their 64-hex id known to the workspace, characters
  by a name registered in the bank plus an image index, exports by fixed names; files come from workspace rows;
- uploads are limited to 20 MB, must carry an image signature, and are decoded by ``imageio.decode_image``
  (which refuses decompression bombs and corrupt files): failures are 400 with the reason.

Each request opens its own ``Workspace`` (SQLite connections are per thread); re-runs go to ``jobs.JobRunner``.
"""
from __future__ import annotations

import hmac
import io
import secrets
import threading
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from flask import Flask, Response, g, jsonify, request, send_file
from PIL import Image
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..imageio import ImageError, decode_image
from ..records import PAGE_ID_RE, ColorHint, IdentityOverride, RecordError, box_iou, check_box, check_name
from ..workspace import Workspace, WorkspaceError
from . import state
from .jobs import JobRunner
from .uploads import MAX_UPLOAD_BYTES, check_upload, crop_sample, png_bytes, sniff_format

TOKEN_HEADER = "X-Review-Token"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
THUMB_WIDTH = 240
_EXT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _LRU:
    """A small thread-safe cache of encoded images (originals are immutable: content-addressed)."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


def _host_only(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _default_pipeline_factory(ws_root: Path):
    def make():
        from ..config import load_config
        from ..pipeline import Pipeline

        cfg_file = ws_root / "config.toml"
        return Pipeline(load_config(cfg_file if cfg_file.exists() else None, {}))
    return make


def create_app(ws_root: Path, *, pipeline_factory: Callable[[], object] | None = None, token: str | None = None,
               allowed_hosts=(), low_confidence: float = state.DEFAULT_LOW_CONFIDENCE) -> Flask:
    """The review app for the workspace at ``ws_root``. ``pipeline_factory`` builds the Pipeline used for re-runs
    (default: the workspace's config.toml, as `manga-color run` uses it); ``token`` the CSRF token (default: random);
    ``allowed_hosts`` extra Host names to answer besides loopback ("0.0.0.0"/"::" allows any)."""
    ws_root = Path(ws_root).resolve()
    Workspace.open(ws_root).close()  # fail now, not on the first request
    static = resources.files("manga_pipeline.review") / "static"
    app = Flask(__name__, static_folder=str(static), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 512 * 1024  # form overhead on top of one image
    app.json.sort_keys = False
    token = token or secrets.token_urlsafe(32)
    hosts = LOOPBACK | {h.lower().strip("[]") for h in allowed_hosts}
    any_host = bool(hosts & {"0.0.0.0", "::"})
    runner = JobRunner(ws_root, pipeline_factory or _default_pipeline_factory(ws_root))
    originals = _LRU(16)
    thumbs = _LRU(256)
    app.extensions["review"] = {"token": token, "runner": runner, "root": ws_root}

    # --- plumbing -----------------------------------------------------------------------------------------

    def ws() -> Workspace:
        if "ws" not in g:
            g.ws = Workspace.open(ws_root)
        return g.ws

    @app.teardown_appcontext
    def _close(_exc):
        w = g.pop("ws", None)
        if w is not None:
            w.close()

    @app.before_request
    def _guard():
        if not any_host and _host_only(request.host) not in hosts:
            raise ApiError(403, f"host {request.host!r} is not served here; open http://127.0.0.1:<port>/")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            sent = request.headers.get(TOKEN_HEADER, "")
            if not sent or not hmac.compare_digest(sent.encode(), token.encode()):
                raise ApiError(403, f"missing or wrong {TOKEN_HEADER} header (reload the review page)")

    @app.after_request
    def _headers(resp: Response):
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc):
        return jsonify(error=f"upload is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit"), 413

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if request.path.startswith("/api/"):
            return jsonify(error=exc.description or exc.name), exc.code
        return exc

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "send a JSON object (Content-Type: application/json)")
        return data

    def page_of(page_id: str):
        if not PAGE_ID_RE.match(page_id):
            raise ApiError(404, "not a page id (64 lowercase hex digits)")
        try:
            return ws().page(page_id)
        except WorkspaceError as exc:
            raise ApiError(404, str(exc)) from None

    def inside_ws(path) -> Path:
        p = Path(path).resolve()
        if ws_root not in p.parents:
            raise ApiError(404, "file is outside the workspace")
        if not p.is_file():
            raise ApiError(404, "file is missing; re-run the page")
        return p

    def bank_names(with_reference: bool = False) -> set[str]:
        return {b["name"] for b in state.bank_state(ws()) if b["has_reference"] or not with_reference}

    def panel_orders(page_id: str) -> list[int]:
        det = ws().latest_identities(page_id)
        return [p.order for p in det.panels_in_order()] if det else []

    def check_panel(page_id: str, panel: int) -> int:
        orders = panel_orders(page_id)
        if panel != -1 and panel not in orders:
            raise ApiError(404, f"page has no panel {panel} (panels: {orders or 'none yet; run the page'}; "
                                "-1 is the art outside panels)")
        return panel

    def detail(page):
        return state.page_detail(ws(), page, low_confidence)

    # --- the page -----------------------------------------------------------------------------------------

    @app.get("/")
    def index():
        html = (static / "index.html").read_text(encoding="utf-8").replace("{{TOKEN}}", token)
        resp = Response(html, mimetype="text/html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/api/chapter")
    def chapter():
        w = ws()
        return jsonify(
            workspace=ws_root.name,
            pages=[state.page_summary(w, p, low_confidence) for p in w.pages()],
            bank=state.bank_state(w),
            jobs=[j.to_json() for j in runner.active()],
            low_confidence=low_confidence,
        )

    @app.get("/api/pages/<page_id>")
    def page_get(page_id):
        return jsonify(detail(page_of(page_id)))

    def _png_response(data: bytes, cache: str) -> Response:
        resp = Response(data, mimetype="image/png")
        resp.headers["Cache-Control"] = cache
        return resp

    def _original_png(page) -> bytes:
        def make():
            img = decode_image(page.source.read_bytes(), page.short_id)
            return png_bytes(img.rgb if img.is_color else img.gray)
        try:
            return originals.get(page.page_id, make)
        except (OSError, ImageError) as exc:
            raise ApiError(500, f"the workspace's copy of the page cannot be read ({exc})") from None

    @app.get("/api/pages/<page_id>/original.png")
    def page_original(page_id):
        page = page_of(page_id)
        return _png_response(_original_png(page), "private, max-age=86400, immutable")

    @app.get("/api/pages/<page_id>/colored.png")
    def page_colored(page_id):
        page = page_of(page_id)
        res = ws().page_result(page.page_id)
        if not res or not res.get("output"):
            raise ApiError(404, "page has no coloured output yet; run it")
        resp = send_file(inside_ws(res["output"]), mimetype="image/png", max_age=0)
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.get("/api/pages/<page_id>/thumb.png")
    def page_thumb(page_id):
        page = page_of(page_id)
        res = ws().page_result(page.page_id)
        output = res.get("output") if res else None
        if output and Path(output).is_file():
            path = inside_ws(output)
            key = (page.page_id, "c", res["key"], res["created_at"])
            make = lambda: path.read_bytes()  # noqa: E731
        else:
            key = (page.page_id, "o")
            make = lambda: _original_png(page)  # noqa: E731

        def thumb():
            with Image.open(io.BytesIO(make())) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                return buf.getvalue()
        return _png_response(thumbs.get(key, thumb), "no-cache")

    # --- overrides ----------------------------------------------------------------------------------------

    @app.post("/api/pages/<page_id>/identity")
    def set_identity(page_id):
        """{"box": [x0, y0, x1, y1], "name": NAME | null, "new_character": bool}: who the character in box is;
        with new_character, NAME is registered first from the box cut out of the page (a B/W sample)."""
        page = page_of(page_id)
        data = body()
        w = ws()
        try:
            box = check_box(data.get("box"), page.width, page.height, what="character box")
            name = data.get("name")
            if name is not None:
                check_name(name)
            if data.get("new_character"):
                from ..bank import build_character

                if name is None:
                    raise ApiError(400, "a new character needs a name")
                if name in bank_names():
                    raise ApiError(409, f"character {name!r} is already registered; pick it from the list")
                gray = decode_image(page.source.read_bytes(), page.short_id).gray
                _, sample = crop_sample(gray, box)
                built = build_character(name, samples=[(f"sample-page{page.position + 1}.png", sample)])
                w.add_character(built.name, built.features, built.descriptors, built.images)
            elif name is not None and name not in bank_names():
                raise ApiError(400, f"no character named {name!r} in the bank; register it first")
        except (RecordError, ImageError) as exc:
            raise ApiError(400, str(exc)) from None
        # the newest word on a box replaces the earlier ones (they would be overruled anyway)
        for o in w.list_overrides(page.page_id):
            if o["kind"] == "identity" and box_iou(tuple(o["box"]), box) >= 0.9:
                w.remove_override(o["id"])
        oid = w.add_override(IdentityOverride(page.page_id, box, name))
        return jsonify(override=oid, page=detail(page))

    @app.post("/api/pages/<page_id>/hints")
    def add_hint(page_id):
        """{"x": int, "y": int, "color": "#rrggbb"} in page pixels."""
        page = page_of(page_id)
        data = body()
        try:
            x, y = int(data.get("x")), int(data.get("y"))
        except (TypeError, ValueError):
            raise ApiError(400, "hint needs integer x and y (page pixels)") from None
        if not (0 <= x < page.width and 0 <= y < page.height):
            raise ApiError(400, f"hint point ({x}, {y}) is outside the {page.width}x{page.height} page")
        try:
            hint = ColorHint(page.page_id, x, y, str(data.get("color", "")))
        except RecordError as exc:
            raise ApiError(400, str(exc)) from None
        oid = ws().add_override(hint)
        return jsonify(override=oid, page=detail(page))

    @app.delete("/api/pages/<page_id>/overrides/<int:override_id>")
    def remove_override(page_id, override_id):
        page = page_of(page_id)
        w = ws()
        if not any(o["id"] == override_id for o in w.list_overrides(page.page_id)):
            raise ApiError(404, f"page has no override #{override_id}")
        w.remove_override(override_id)
        return jsonify(removed=override_id, page=detail(page))

    @app.post("/api/pages/<page_id>/panels/<int(signed=True):panel>/reference")
    def set_reference(page_id, panel):
        """{"name": NAME | null}: the page-level reference of this panel (null: back to the default)."""
        page = page_of(page_id)
        check_panel(page.page_id, panel)
        if panel < 0:  # records.PageOverrides refuses a reference for the page-level pass
            raise ApiError(400, "the art outside panels (-1) takes the configured scene reference "
                                "(colorize.scene); pick a reference per panel instead")
        name = body().get("name")
        w = ws()
        if name is not None:
            try:
                check_name(name)
            except RecordError as exc:
                raise ApiError(400, str(exc)) from None
            if name not in bank_names(with_reference=True):
                raise ApiError(400, f"{name!r} is not a character with a colour reference in the bank")
        for o in w.list_overrides(page.page_id):
            if o["kind"] == "reference" and o["panel"] == panel:
                w.remove_override(o["id"])
        oid = w.add_override(("reference", page.page_id, panel, name)) if name is not None else None
        return jsonify(override=oid, page=detail(page))

    def _lock(page, panel: int, locked: bool):
        w = ws()
        rows = [o for o in w.list_overrides(page.page_id) if o["kind"] == "lock" and o["panel"] == panel]
        if locked and not rows:
            w.add_override(("lock", page.page_id, panel))
        elif not locked:
            for o in rows:
                w.remove_override(o["id"])

    @app.post("/api/pages/<page_id>/panels/<int(signed=True):panel>/lock")
    def lock_panel(page_id, panel):
        """{"locked": bool}: accept the panel's colours as they are (re-runs keep them) or release it."""
        page = page_of(page_id)
        check_panel(page.page_id, panel)
        _lock(page, panel, bool(body().get("locked", True)))
        return jsonify(page=detail(page))

    @app.post("/api/pages/<page_id>/accept")
    def accept_page(page_id):
        """{"locked": bool}: lock (or release) every panel of the page, and its page-level pass."""
        page = page_of(page_id)
        locked = bool(body().get("locked", True))
        orders = panel_orders(page.page_id)
        if not orders and ws().page_result(page.page_id) is None:
            raise ApiError(409, "page has not been run yet: nothing to accept")
        for panel in [*orders, -1]:
            _lock(page, panel, locked)
        return jsonify(page=detail(page))

    # --- re-runs ------------------------------------------------------------------------------------------

    @app.post("/api/pages/<page_id>/rerun")
    def rerun(page_id):
        """{"panel": int | null}: re-run the page now; only panels whose inputs changed are recoloured."""
        page = page_of(page_id)
        panel = body().get("panel")
        if panel is not None:
            try:
                panel = check_panel(page.page_id, int(panel))
            except (TypeError, ValueError):
                raise ApiError(400, "panel must be an integer or null") from None
        job = runner.submit(page.page_id, panel)
        return jsonify(job.to_json()), 202

    @app.get("/api/jobs/<int:job_id>")
    def job_get(job_id):
        job = runner.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id}")
        return jsonify(job.to_json())

    # --- character bank -----------------------------------------------------------------------------------

    @app.get("/api/bank")
    def bank_get():
        return jsonify(bank=state.bank_state(ws()))

    @app.get("/api/bank/<name>/images/<int:index>.png")
    def bank_image(name, index):
        entry = next((e for e in ws().bank() if e.name == name), None)
        if entry is None or not (0 <= index < len(entry.images)):
            raise ApiError(404, "no such character image")
        path = inside_ws(entry.images[index][1])
        key = ("bank", str(path))

        def make():
            img = decode_image(path.read_bytes(), path.name)
            im = Image.fromarray(img.rgb)
            im.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 2))
            return png_bytes(np.asarray(im))
        try:
            return _png_response(thumbs.get(key, make), "private, max-age=3600")
        except ImageError as exc:
            raise ApiError(500, str(exc)) from None

    @app.post("/api/bank")
    def bank_add():
        """multipart: name, mode ("new" | "add": add images to a registered character), files "reference"
        (colour images) and "sample" (B/W crops); answers the character with its extracted palette."""
        from ..bank import build_character

        name = request.form.get("name", "")
        mode = request.form.get("mode", "new")
        if mode not in ("new", "add"):
            raise ApiError(400, "mode must be 'new' or 'add'")
        uploads = {kind: request.files.getlist(kind) for kind in ("reference", "sample")}
        if not any(uploads.values()):
            raise ApiError(400, "upload at least one reference (colour) or sample (B/W) image")
        w = ws()
        try:
            check_name(name)
            items: dict[str, list] = {"reference": [], "sample": []}
            existing = next((e for e in w.bank() if e.name == name), None)
            if mode == "new" and existing is not None:
                raise ApiError(409, f"character {name!r} is already registered; add images to it instead")
            if mode == "add":
                if existing is None:
                    raise ApiError(404, f"no character named {name!r}")
                for kind, path in existing.images:
                    items[kind].append((Path(path).name, inside_ws(path).read_bytes()))
            for kind, files in uploads.items():
                for i, f in enumerate(files):
                    data = f.read(MAX_UPLOAD_BYTES + 1)
                    label = f"{kind} upload {i + 1}"
                    check_upload(data, label)
                    items[kind].append((f"{kind}{_EXT[sniff_format(data)]}", data))
            built = build_character(name, items["reference"], items["sample"])
            w.add_character(built.name, built.features, built.descriptors, built.images, replace=mode == "add")
        except (RecordError, ImageError) as exc:
            raise ApiError(400, str(exc)) from None
        except WorkspaceError as exc:
            raise ApiError(409, str(exc)) from None
        entry = next(b for b in state.bank_state(w) if b["name"] == name)
        return jsonify(character=entry, bank=state.bank_state(w))

    # --- export -------------------------------------------------------------------------------------------

    @app.post("/api/export")
    def export():
        """{"format": "cbz" | "png"}: into WORKSPACE/export/ (chapter.cbz or pages/); cbz answers a download."""
        from ..export import export_cbz, export_pages

        fmt = body().get("format", "cbz")
        if fmt not in ("cbz", "png"):
            raise ApiError(400, "format must be 'cbz' or 'png'")
        out_dir = ws_root / "export"
        out_dir.mkdir(exist_ok=True)
        if fmt == "cbz":
            written, missing = export_cbz(ws(), out_dir / "chapter.cbz")
            where, download = out_dir / "chapter.cbz", "/api/export/chapter.cbz"
        else:
            written, missing = export_pages(ws(), out_dir / "pages", fmt="png")
            where, download = out_dir / "pages", None
        return jsonify(format=fmt, written=len(written), missing=missing, path=str(where), download=download)

    @app.get("/api/export/chapter.cbz")
    def export_download():
        path = ws_root / "export" / "chapter.cbz"
        if not path.is_file():
            raise ApiError(404, "no export yet: export the chapter first")
        return send_file(path, mimetype="application/vnd.comicbook+zip", as_attachment=True,
                         download_name=f"{ws_root.name}.cbz", max_age=0)

    return app


class ReviewServer:
    """The review app on a real socket: ``start()`` in a thread (tests) or ``serve_forever()`` (the CLI).
    ``port`` 0 picks a free port; ``url`` says where it listens."""

    def __init__(self, ws_root: Path, host: str = "127.0.0.1", port: int = 0, **app_kwargs):
        from werkzeug.serving import make_server

        self.host = host
        self.app = create_app(ws_root, allowed_hosts=[host], **app_kwargs)
        self._server = make_server(host, port, self.app, threaded=True)
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    @property
    def token(self) -> str:
        return self.app.extensions["review"]["token"]

    @property
    def runner(self) -> JobRunner:
        return self.app.extensions["review"]["runner"]

    def serve_forever(self):
        try:
            self._server.serve_forever()
        finally:
            self.runner.close()

    def start(self) -> "ReviewServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="review-http", daemon=True)
        self._thread.start()
        return self

    def shutdown(self):
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.runner.close()
