"""Identity embedding: a small CNN that maps a B/W character crop to a unit vector.

Two crops of the same character (in any pose, framing, B/W style, or a colour reference turned gray) should land
close (cosine similarity near 1), crops of different characters far apart. The network is trained here by
metric learning (``detectors.identify_train``); ``build_embedder`` makes an untrained one, ``Embedder.load``
loads shipped weights (``weights/identifier-*.pt``, sha256-checked) or falls back to seeded random weights and
says so (``trained = False``).

Crop convention: ``uint8 (h, w)`` gray, paper white. ``prepare_crop`` letterboxes it (aspect kept) into a
``size x size`` square in *ink* units (0 = paper, 1 = black), so that padding is paper.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ARCH = "identifier"


@dataclass(frozen=True)
class EmbedderConfig:
    size: int = 112                                # input side in pixels (letterboxed square)
    widths: tuple[int, ...] = (24, 48, 96, 160, 256)  # channels of the stem and of each stride-2 stage
    dim: int = 128                                 # embedding dimension

    def to_json(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "EmbedderConfig":
        return cls(size=int(d["size"]), widths=tuple(int(w) for w in d["widths"]), dim=int(d["dim"]))


def _conv(i: int, o: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class _Stage(nn.Module):
    """Stride-2 conv then a residual 3x3 conv."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.down = _conv(i, o, 2)
        self.body = nn.Sequential(nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        x = self.down(x)
        return F.relu(x + self.body(x), inplace=True)


class EmbeddingNet(nn.Module):
    """float32 (N, 1, S, S) ink crops -> float32 (N, dim) unit vectors.

    ``calib`` (3,) holds the confidence calibration fitted after training: confidence =
    sigmoid(calib[0] * best_similarity + calib[1] * (best - runner_up) + calib[2]).
    """

    def __init__(self, config: EmbedderConfig = EmbedderConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = _conv(1, w[0], 2)
        self.stages = nn.Sequential(*[_Stage(a, b) for a, b in zip(w[:-1], w[1:])])
        self.head = nn.Linear(2 * w[-1], config.dim)
        self.register_buffer("calib", torch.tensor([20.0, 0.0, -15.0]))

    def forward(self, x):
        f = self.stages(self.stem(x))
        # mean pooling says "how much of each pattern", max pooling "is it there at all" (a small accessory)
        f = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return F.normalize(self.head(f), dim=1)


def build_embedder(config: EmbedderConfig = EmbedderConfig(), *, seed: int = 0) -> EmbeddingNet:
    """An untrained network with seeded weights (no weights are loaded)."""
    torch.manual_seed(seed)
    return EmbeddingNet(config).eval()


def prepare_crop(gray: np.ndarray, size: int) -> np.ndarray:
    """uint8 (h, w) crop (paper white) -> float32 (size, size) ink (0 paper .. 1 black), letterboxed, centred."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"a crop must be uint8 (h, w), got {gray.dtype} {gray.shape}")
    h, w = gray.shape
    if h < 1 or w < 1:
        raise ValueError("a crop must not be empty")
    s = size / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(gray, (nw, nh), interpolation=interp)
    out = np.zeros((size, size), np.float32)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = 1.0 - small.astype(np.float32) / 255.0
    return out


def print_tones(rgb: np.ndarray, *, black_L: float = 30.0, white_L: float = 80.0,
                dots: int = 0) -> np.ndarray:
    """How a colour image would print in a B/W manga: uint8 (H, W, 3) RGB -> uint8 (H, W) gray.

    Dark colours (L* < black_L) print black, light ones (L* > white_L) stay paper, the middle becomes screentone
    whose ink coverage grows as L* falls. ``dots`` > 0 draws the tone as a dot screen with that pitch in pixels;
    0 gives the flat gray a screen averages to (what the network sees once a crop is shrunk).
    """
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    L = lab[..., 0]
    cover = np.clip((white_L + 8.0 - L) / (white_L + 8.0 - black_L + 20.0), 0.1, 0.8)
    cover = np.where(L < black_L, 1.0, np.where(L > white_L, 0.0, cover))
    if dots > 0:
        yy, xx = np.mgrid[0:L.shape[0], 0:L.shape[1]].astype(np.float32)
        u, v = 2 * np.pi * (xx + yy) / (2 * dots), 2 * np.pi * (yy - xx) / (2 * dots)
        spot = (np.cos(u) + np.cos(v) + 2.0) / 4.0  # 0..1, dot centres high
        tone = np.where((L >= black_L) & (L <= white_L), (spot > 1.0 - cover).astype(np.float32), cover)
        cover = tone
    return np.clip(np.round(255.0 * (1.0 - cover)), 0, 255).astype(np.uint8)


class Embedder:
    """A loaded (or untrained) embedding network and the id of its weights (which goes into cache keys)."""

    def __init__(self, net: EmbeddingNet, weights_id: str, trained: bool):
        self.net = net.eval()
        self.weights_id = weights_id
        self.trained = trained

    @property
    def config(self) -> EmbedderConfig:
        return self.net.config

    @property
    def dim(self) -> int:
        return self.net.config.dim

    @classmethod
    def load(cls, tag: str | None = None) -> "Embedder":
        """Shipped weights ``identifier.TAG`` (default: the manifest's default), else an untrained network."""
        import weights as registry

        if tag is not None and tag.endswith(".pt"):  # a weights file being developed, not (yet) registered
            import hashlib
            from pathlib import Path

            path = Path(tag)
            if not path.is_file():
                raise registry.WeightsError(f"{path}: no such weights file")
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            state = torch.load(path, map_location="cpu", weights_only=True)
            return cls(net_from_state(state), f"{ARCH}.file-{path.stem}@{sha[:12]}", True)
        tag = tag or registry.default_tag(ARCH)
        if tag is None:
            return cls(build_embedder(), f"{ARCH}.untrained", False)
        if "." not in tag:
            tag = f"{ARCH}.{tag}"
        state = registry.load_state(tag)
        return cls(net_from_state(state), registry.get_spec(tag).short, True)

    def embed(self, crops: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
        """float32 (n, dim) unit embeddings of uint8 (h, w) crops; a crop and its mirror image are averaged
        (characters face either way)."""
        if not len(crops):
            return np.zeros((0, self.dim), np.float32)
        size = self.config.size
        out = []
        # A page's few crops are a small batch: intra-op threads cost more than they save (measured on a shared
        # 2-core machine: 0.04 s per page single-threaded, 0.1-0.7 s with 2 threads), so run single-threaded.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                for i in range(0, len(crops), batch):
                    x = torch.from_numpy(np.stack([prepare_crop(c, size) for c in crops[i:i + batch]]))[:, None]
                    e = self.net(x) + self.net(torch.flip(x, dims=[3]))
                    out.append(F.normalize(e, dim=1).numpy())
        finally:
            torch.set_num_threads(threads)
        return np.concatenate(out).astype(np.float32)

    def confidence(self, best: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Calibrated probability that the best-matching name is right, from cosine similarities."""
        a, b, c = (float(v) for v in self.net.calib)
        z = a * np.asarray(best, np.float64) + b * (np.asarray(best) - np.asarray(second)) + c
        return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)


def net_to_state(net: EmbeddingNet) -> dict:
    """What a weights file holds: the config and the state dict (loadable with ``weights_only=True``)."""
    return {"arch": ARCH, "config": net.config.to_json(),
            "state": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}}


def net_from_state(state: dict) -> EmbeddingNet:
    if state.get("arch") != ARCH:
        raise ValueError(f"not identifier weights (arch {state.get('arch')!r})")
    net = EmbeddingNet(EmbedderConfig.from_json(state["config"]))
    net.load_state_dict(state["state"])
    return net.eval()
