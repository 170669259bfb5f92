"""Learned detector: a YOLO11n network (trained here, ``detectors.yolo_train``) + classical panel outlines.

``YoloDetector`` has the interface of ``ClassicalDetector``: ``name`` (goes into cache keys; it holds the
weights' ``arch.tag@sha12``), ``config`` (a frozen dataclass) and ``detect(page_id, gray) -> PageDetections``.

1. The page is scaled so that its long side is ``imgsz`` and padded right/bottom to a multiple of 32.
2. The network gives boxes of 4 classes (panel, body, face, text); class-wise NMS; per-class thresholds. When a
   figures network is shipped (``figures.*``, trained where every figure is labelled), bodies and faces come from
   it (at ``figures_imgsz``) and panels and texts from the main network.
3. Panels: each YOLO box is replaced by the classical panel polygon (``detectors.panels``) whose bounds agree
   with it (box IoU >= ``refine_iou``): slanted and irregular frames keep their real outline; else the box.
   Reading order: ``layout.order.reading_order`` (right to left for manga unless ``rtl`` is False). No panel
   box at all → the classical result (its page-level panel on a splash page).
4. Characters from body boxes (``panel`` = the order of the panel holding most of the box); optionally
   (``faces_as_characters``) a face box with no body around it adds a figure the body class missed.
5. Texts from text boxes; ``mask`` = the paper pixels of the box connected to its lettering (balloon interior).
Everything returned is in page pixels of the input.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from shapely.geometry import box as shapely_box

from layout.order import reading_order
from manga_pipeline.records import CharacterInstance, PageDetections, Panel, TextRegion, box_iou

from .base import check_gray
from .masks import figure_mask
from .panels import PanelConfig, detect_panels
from .yolo_data import BODY, FACE, PANEL, TEXT
from .yolo_env import ensure_offline_ultralytics

ARCH = "detector"
FIGURES_ARCH = "figures"  # a second network trained for bodies and faces only (``train detector --role figures``)


@dataclass(frozen=True)
class YoloConfig:
    """Settings of the learned detector. ``weights``: a ``detector.*`` tag (None = the shipped default)."""

    weights: str | None = None
    # the network for the body and face classes: a ``figures.*`` tag, None = the shipped default figures network
    # (the main network's own body/face classes when none is shipped), "main" = always the main network's
    figures: str | None = None
    rtl: bool = True
    imgsz: int | None = None    # long side of the network input (pixels); None = the size it was trained at
    # the same for the figures network: 384 (trained at 448) is as accurate on the synthetic tuning chapter (body
    # P/R .88/.96 at both) and faster; None = its training size
    figures_imgsz: int | None = 384
    panel_conf: float = 0.35
    # chosen for figures.v2 (at 384) by the mean body F1 of a synthetic tuning chapter (demo seed 905001) and the
    # Pepper&Carrot train split: .67 at .10, .61 at .20, .55 at .30 (it was .10 for detector.v1's body class too)
    body_conf: float = 0.10
    text_conf: float = 0.25
    face_conf: float = 0.40
    faces_as_characters: bool = False  # a face with no body box around it becomes a character (hurt on real pages)
    nms_iou: float = 0.5
    refine_panels: bool = True  # snap YOLO panel boxes to the classical outline where the two agree
    refine_iou: float = 0.85
    device: str = "cpu"
    panels: PanelConfig = field(default_factory=PanelConfig)


def available(tag: str | None = None) -> bool:
    """Whether detector weights are shipped (and intact)."""
    from weights import WeightsError, default_tag, weights_path

    tag = tag or default_tag(ARCH)
    if tag is None:
        return False
    try:
        weights_path(tag)
    except WeightsError:
        return False
    return True


def load_network(tag: str | None = None, device: str = "cpu"):
    """(network in eval mode, spec, payload) of the detector weights ``tag`` (sha256-verified)."""
    spec, payload = load_payload(tag)
    return build_network(payload, device), spec, payload


def load_payload(tag: str | None = None, arch: str = ARCH):
    """(spec, payload) of the detector weights ``tag`` (sha256-verified), without building the network."""
    import torch

    from weights import WeightsError, default_tag, get_spec, weights_path

    tag = tag or default_tag(arch)
    if tag is None:
        raise WeightsError("no detector weights are shipped; train them with `manga-color train detector` "
                           "or use detect.backend=classical")
    path = weights_path(tag)
    return get_spec(tag), torch.load(path, map_location="cpu", weights_only=True)


def build_network(payload: dict, device: str = "cpu"):
    """A DetectionModel from a weights payload (``state_dict``, ``yaml``) in eval mode."""
    ensure_offline_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    net = DetectionModel(cfg=dict(payload["yaml"]), nc=len(payload["names"]), verbose=False)
    net.load_state_dict(payload["state_dict"])
    net.names = dict(enumerate(payload["names"]))
    return net.to(device).eval()


def run_network(net, gray: np.ndarray, imgsz: int, conf: float, iou: float, device: str = "cpu") -> np.ndarray:
    """Raw detections ``float (N, 6)``: x0, y0, x1, y1 (page pixels), score, class."""
    import torch

    ensure_offline_ultralytics()
    from ultralytics.utils.nms import non_max_suppression

    h, w = gray.shape
    s = imgsz / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    pw, ph = -(-nw // 32) * 32, -(-nh // 32) * 32
    canvas = np.full((ph, pw), 114, np.uint8)
    canvas[:nh, :nw] = small
    x = torch.from_numpy(canvas).to(device).float().div_(255.0)[None, None].expand(1, 3, ph, pw).contiguous()
    with torch.inference_mode():
        pred = net(x)
        pred = pred[0] if isinstance(pred, (list, tuple)) else pred
        det = non_max_suppression(pred, conf_thres=conf, iou_thres=iou, max_det=300)[0]
    det = det.cpu().numpy().astype(np.float64)
    if det.size == 0:
        return np.zeros((0, 6))
    det[:, [0, 2]] = np.clip(det[:, [0, 2]] / (nw / w), 0, w)
    det[:, [1, 3]] = np.clip(det[:, [1, 3]] / (nh / h), 0, h)
    return det[:, :6]


def _int_box(b, w: int, h: int):
    x0, y0 = int(np.floor(max(0.0, b[0]))), int(np.floor(max(0.0, b[1])))
    x1, y1 = int(np.ceil(min(float(w), b[2]))), int(np.ceil(min(float(h), b[3])))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


class YoloDetector:
    """Panels, characters and text regions of a gray page from the trained YOLO network."""

    def __init__(self, config: YoloConfig = YoloConfig()):
        self.config = config
        self.spec, self._payload = load_payload(config.weights)  # verified now; the network is built on first use
        self._net = None
        self.imgsz = int(config.imgsz or self._payload.get("imgsz", 640))
        self.figures_spec, self._figures_payload, self._figures_net = None, None, None
        if config.figures != "main":
            from weights import default_tag

            tag = config.figures or default_tag(FIGURES_ARCH)
            if tag is not None:
                self.figures_spec, self._figures_payload = load_payload(tag, FIGURES_ARCH)
        fig = ""
        if self.figures_spec is not None:
            self.figures_imgsz = int(config.figures_imgsz or self._figures_payload.get("imgsz", 640))
            fig = f"+{self.figures_spec.short}@{self.figures_imgsz}"
        self.name = f"yolo-{self.spec.short}{fig}+figmask3"

    @property
    def net(self):
        """The network, built on first use: a re-run whose detections are all cached never pays for it."""
        if self._net is None:
            self._net = build_network(self._payload, self.config.device)
        return self._net

    @property
    def figures_net(self):
        """The body/face network (built on first use), or None when the main network's classes are used."""
        if self._figures_net is None and self._figures_payload is not None:
            self._figures_net = build_network(self._figures_payload, self.config.device)
        return self._figures_net

    def detect(self, page_id: str, gray: np.ndarray) -> PageDetections:
        """Detect on ``gray`` (``uint8 (H, W)``); boxes and polygons in page pixels of ``gray``."""
        check_gray(gray)
        cfg = self.config
        h, w = gray.shape
        if self.figures_spec is None:
            min_conf = min(cfg.panel_conf, cfg.body_conf, cfg.text_conf, cfg.face_conf)
            det = run_network(self.net, gray, self.imgsz, min_conf, cfg.nms_iou, cfg.device)
        else:
            main = run_network(self.net, gray, self.imgsz, min(cfg.panel_conf, cfg.text_conf), cfg.nms_iou,
                               cfg.device)
            main = main[np.isin(main[:, 5].astype(int), (PANEL, TEXT))]
            figs = run_network(self.figures_net, gray, self.figures_imgsz, min(cfg.body_conf, cfg.face_conf),
                               cfg.nms_iou, cfg.device)
            figs = figs[np.isin(figs[:, 5].astype(int), (BODY, FACE))]
            det = np.concatenate([main, figs])
        cls = det[:, 5].astype(int)
        conf_of = {PANEL: cfg.panel_conf, BODY: cfg.body_conf, TEXT: cfg.text_conf, FACE: cfg.face_conf}
        keep = det[:, 4] >= np.array([conf_of[c] for c in cls]) if len(det) else np.zeros(0, bool)
        det, cls = det[keep], cls[keep]

        panels = self._panels(gray, det[cls == PANEL])
        texts = self._texts(gray, det[cls == TEXT])
        characters = self._characters(gray, det[cls == BODY], det[cls == FACE], panels)
        return PageDetections(page_id, w, h, panels=panels, characters=characters, texts=texts)

    # --- steps ----------------------------------------------------------------------------------------------

    def _panels(self, gray: np.ndarray, boxes: np.ndarray) -> tuple[Panel, ...]:
        h, w = gray.shape
        cfg = self.config
        if not len(boxes):
            # nothing panel-like found (a splash, a cover): the classical page-level panel, as ClassicalDetector
            return detect_panels(gray, rtl=cfg.rtl, config=cfg.panels)
        classical = []
        if cfg.refine_panels:
            classical = [p.polygon for p in detect_panels(gray, rtl=cfg.rtl, config=cfg.panels)]
        polys, scores, used = [], [], set()
        for b in boxes:
            ib = _int_box(b, w, h)
            if ib is None:
                continue
            best, best_iou = None, cfg.refine_iou
            for k, poly in enumerate(classical):
                if k in used:
                    continue
                x0, y0, x1, y1 = poly.bounds
                iou = box_iou(ib, (x0, y0, x1, y1))
                if iou >= best_iou:
                    best, best_iou = k, iou
            if best is not None:
                used.add(best)
                poly = classical[best].intersection(shapely_box(0, 0, w, h))
                if poly.geom_type != "Polygon" or poly.area < 1.0 or not poly.is_valid:
                    poly = shapely_box(*ib)
            else:
                poly = shapely_box(*ib)
            polys.append(poly)
            scores.append(float(np.clip(b[4], 0, 1)))
        order = reading_order(polys, rtl=cfg.rtl)
        rank = {i: r for r, i in enumerate(order)}
        return tuple(Panel(polys[i], rank[i], scores[i]) for i in range(len(polys)))

    def _texts(self, gray: np.ndarray, boxes: np.ndarray) -> tuple[TextRegion, ...]:
        h, w = gray.shape
        out = []
        for b in boxes:
            ib = _int_box(b, w, h)
            if ib is None:
                continue
            out.append(TextRegion(ib, kind="balloon", score=float(np.clip(b[4], 0, 1)), mask=_paper_mask(gray, ib)))
        return tuple(out)

    def _characters(self, gray: np.ndarray, bodies: np.ndarray, faces: np.ndarray, panels):
        h, w = gray.shape
        boxes = [(_int_box(b, w, h), float(b[4])) for b in bodies]
        boxes = [(b, s) for b, s in boxes if b is not None]
        # a confident face with no body box around it is a figure the body class missed (close-ups)
        for f in (faces if self.config.faces_as_characters else ()):
            fb = _int_box(f, w, h)
            if fb is None:
                continue
            if not any(_inside_share(fb, b) > 0.5 for b, _ in boxes):
                boxes.append((fb, float(f[4]) * 0.9))
        panel_box = {p.order: p.box for p in panels}
        out = []
        for b, s in boxes:
            order = _panel_of(b, panels)
            out.append(CharacterInstance(b, score=float(np.clip(s, 0, 1)), panel=order,
                                         mask=figure_mask(gray, b, clip=panel_box.get(order))))
        return tuple(out)


def _inside_share(inner, outer) -> float:
    ix = max(0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return ix * iy / area if area else 0.0


def _panel_of(b, panels) -> int | None:
    best, best_a = None, 0.0
    bp = shapely_box(*b)
    for p in panels:
        a = p.polygon.intersection(bp).area
        if a > best_a:
            best, best_a = p.order, a
    return best if best_a > 0.3 * bp.area else None


def _paper_mask(gray: np.ndarray, box) -> np.ndarray:
    """Bool (h, w) of the box: the light pixels and the lettering they enclose (what must stay white)."""
    x0, y0, x1, y1 = box
    sub = gray[y0:y1, x0:x1]
    if sub.size == 0:
        return np.zeros((y1 - y0, x1 - x0), bool)
    light = sub >= max(150, int(np.percentile(sub, 90)) - 40)
    # close the strokes of the lettering into the white around them
    k = max(3, (min(sub.shape) // 20) | 1)
    closed = cv2.morphologyEx(light.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((k, k), np.uint8)) > 0
    return closed


BACKENDS = ("auto", "yolo", "classical")


def build_detector(backend: str = "auto", *, rtl: bool = True, weights: str | None = None,
                   figures: str | None = None, body_conf: float | None = None, figures_imgsz: int | None = None):
    """The page detector for ``backend``: "yolo", "classical", or "auto" (yolo when detector weights are
    shipped, else classical). Loads weights; raises ``ValueError`` for an unknown backend and
    ``weights.WeightsError`` when "yolo" is asked for and no (intact) weights exist."""
    from . import ClassicalDetector, DetectorConfig

    if backend not in BACKENDS:
        raise ValueError(f"unknown detector backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "classical" or (backend == "auto" and not available(weights)):
        if body_conf is not None or figures_imgsz is not None:
            raise ValueError("body thresholds and network sizes apply to the YOLO detector only, not the classical one")
        return ClassicalDetector(DetectorConfig(rtl=rtl))
    extra = {} if body_conf is None else {"body_conf": float(body_conf)}
    if figures_imgsz is not None:
        extra["figures_imgsz"] = int(figures_imgsz)
    return YoloDetector(YoloConfig(weights=weights, figures=figures, rtl=rtl, **extra))
