"""Training the identity embedding (supervised contrastive loss on character crops) and calibrating it.

A batch holds whole casts of a few synthetic chapters (hard negatives: characters of one chapter share a page
style), K views of each, a couple of real named classes (Pepper&Carrot), illustrations seen in two B/W styles,
and unlabelled real crops seen twice (instance discrimination). Views are made on the fly from the stored
crops: box jitter, bust / partial crops, flips, small rotations, tone curves, resolution loss, balloon-like
occlusions, noise. The loss is SupCon (Khosla et al. 2020) with temperature ``temperature``.

After training, the confidence calibration (``EmbeddingNet.calib``) is fitted by logistic regression on
held-out synthetic chapters: features (best similarity, lead over the runner-up), target "the best name is the
right one", over banks that hold every character and banks that miss one (so that unknowns are in the fit).
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .embedding import Embedder, EmbedderConfig, build_embedder
from .identify_data import KINDS, CropSet

VAL_SEEDS = tuple(range(900, 912))      # calibration / validation chapters (never trained on)
EVAL_SEEDS = tuple(range(100, 110))     # reported synthetic evaluation chapters (never trained on)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    chapters: int = 200          # synthetic training chapters
    classes_per_batch: int = 24  # synthetic characters per batch (whole casts)
    per_class: int = 4           # views per labelled class
    real_classes: int = 2        # Pepper&Carrot classes per batch
    image_classes: int = 6       # illustration / face instances (two B/W styles each) per batch
    unlabelled: int = 8          # unlabelled real crops per batch, two views each
    lr: float = 2e-3
    weight_decay: float = 5e-4
    temperature: float = 0.1
    seed: int = 0
    val_chapters: int = len(VAL_SEEDS)  # synthetic chapters for validation and calibration
    embed: EmbedderConfig = EmbedderConfig()


# --- augmentation --------------------------------------------------------------------------------------------


def augment(images: np.ndarray, boxes: np.ndarray, out: int, rng: np.random.Generator) -> torch.Tensor:
    """Random views: uint8 (B, S, S) ink crops + float32 (B, 4) content boxes -> float32 (B, 1, out, out) ink,
    letterboxed like ``prepare_crop`` (outside the chosen region is paper)."""
    B, S = images.shape[0], images.shape[1]
    x = torch.from_numpy(images).float().div_(255.0)[:, None]
    x0, y0, x1, y1 = boxes.T.astype(np.float64)
    bw, bh = x1 - x0, y1 - y0
    mode = rng.choice(3, size=B, p=[0.55, 0.3, 0.15])
    # region (centre, size) inside the stored crop
    w = bw * rng.uniform(0.9, 1.15, B)
    h = bh * rng.uniform(0.9, 1.15, B)
    cx = (x0 + x1) / 2 + rng.normal(0, 0.05, B) * bw
    cy = (y0 + y1) / 2 + rng.normal(0, 0.05, B) * bh
    top = mode == 1  # bust: the upper part of the figure
    h[top] = bh[top] * rng.uniform(0.2, 0.65, top.sum())
    w[top] = bw[top] * rng.uniform(0.8, 1.05, top.sum())
    cy[top] = y0[top] + h[top] / 2 + rng.normal(0, 0.03, top.sum()) * bh[top]
    part = mode == 2  # a partial view (cut by a panel border or occluded)
    a = rng.uniform(0.35, 0.8, part.sum())
    r = np.exp(rng.normal(0, 0.25, part.sum()))
    w[part] = np.minimum(bw[part], bw[part] * np.sqrt(a) * r)
    h[part] = np.minimum(bh[part], bh[part] * np.sqrt(a) / r)
    cx[part] = x0[part] + w[part] / 2 + rng.uniform(0, 1, part.sum()) * (bw[part] - w[part])
    cy[part] = y0[part] + h[part] / 2 + rng.uniform(0, 1, part.sum()) * (bh[part] - h[part])
    w, h = np.maximum(w, 4), np.maximum(h, 4)
    half = np.maximum(w, h) / 2
    flip = np.where(rng.random(B) < 0.5, -1.0, 1.0)
    ang = np.radians(rng.normal(0, 4, B))
    sc = 2 * half / S
    theta = np.zeros((B, 2, 3))
    theta[:, 0, 0] = sc * np.cos(ang) * flip
    theta[:, 0, 1] = -sc * np.sin(ang)
    theta[:, 1, 0] = sc * np.sin(ang) * flip
    theta[:, 1, 1] = sc * np.cos(ang)
    theta[:, 0, 2] = 2 * cx / S - 1
    theta[:, 1, 2] = 2 * cy / S - 1
    grid = F.affine_grid(torch.from_numpy(theta).float(), (B, 1, out, out), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # letterbox: outside the region is paper
    u = torch.linspace(-1 + 1 / out, 1 - 1 / out, out)
    rw = torch.from_numpy(w / (2 * half)).float()[:, None]
    rh = torch.from_numpy(h / (2 * half)).float()[:, None]
    keep = ((u[None].abs() <= rw)[:, None, :] & (u[None].abs() <= rh)[:, :, None])[:, None]
    y = y * keep
    # tone: gamma and contrast
    y = y.clamp(0, 1) ** torch.from_numpy(rng.uniform(0.7, 1.4, B)).float()[:, None, None, None]
    y = y * torch.from_numpy(rng.uniform(0.8, 1.1, B)).float()[:, None, None, None]
    # resolution loss (small figures)
    low = np.nonzero(rng.random(B) < 0.35)[0]
    for f in (2, 3, 4):
        sel = low[(np.arange(len(low)) % 3) == f - 2]
        if len(sel):
            t = torch.from_numpy(sel)
            small = F.avg_pool2d(y[t], f)
            y[t] = F.interpolate(small, size=(out, out), mode="bilinear", align_corners=False)
    # balloon-like occlusion: a paper ellipse with an ink outline, from an edge
    occ = np.nonzero(rng.random(B) < 0.2)[0]
    if len(occ):
        yy, xx = torch.meshgrid(torch.arange(out).float(), torch.arange(out).float(), indexing="ij")
        for i in occ:
            ex, ey = rng.choice([rng.uniform(0, out * 0.25), rng.uniform(out * 0.75, out)]), rng.uniform(0, out)
            ax, ay = rng.uniform(0.15, 0.35) * out, rng.uniform(0.12, 0.3) * out
            d = ((xx - ex) / ax) ** 2 + ((yy - ey) / ay) ** 2
            y[i, 0][d <= 1.0] = 0.0
            y[i, 0][(d > 1.0) & (d <= 1.12)] = 1.0
    y = y + torch.randn_like(y) * float(rng.uniform(0.0, 0.04))
    return y.clamp_(0, 1)


# --- batches and loss ------------------------------------------------------------------------------------------


class BatchSampler:
    def __init__(self, crops: CropSet, cfg: TrainConfig, rng: np.random.Generator):
        self.crops, self.cfg, self.rng = crops, cfg, rng
        by_class: dict[int, list[int]] = {}
        for i, lab in enumerate(crops.labels):
            if lab >= 0:
                by_class.setdefault(int(lab), []).append(i)
        self.by_class = {k: np.array(v) for k, v in by_class.items()}
        self.chapters: dict[str, list[int]] = {}
        self.real, self.images = [], []
        for k, name in enumerate(crops.classes):
            if k not in self.by_class:
                continue
            if name.startswith("syn"):
                if len(self.by_class[k]) >= 2:
                    self.chapters.setdefault(name.split(":")[0], []).append(k)
            elif name.startswith("pc:"):
                self.real.append(k)
            else:
                self.images.append(k)
        self.chapter_keys = sorted(self.chapters)
        ref_kind = KINDS.index("reference")
        self.refs = {k: v[crops.kinds[v] == ref_kind] for k, v in self.by_class.items()}
        self.unlabelled = np.nonzero(crops.labels < 0)[0]

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """(crop indices, labels) of one batch; unlabelled crops get a fresh label per instance."""
        cfg, rng = self.cfg, self.rng
        idx, labels = [], []
        classes: list[int] = []
        chapters = rng.permutation(len(self.chapter_keys))
        for ch in chapters:
            if len(classes) >= cfg.classes_per_batch:
                break
            classes += self.chapters[self.chapter_keys[ch]]
        if self.real:
            classes += list(rng.choice(self.real, size=min(cfg.real_classes, len(self.real)), replace=False))
        for k in classes:
            pool = self.by_class[k]
            refs = self.refs.get(k)
            if refs is not None and len(refs) and len(pool) > len(refs):
                # one colour reference per character: every page appearance has a reference positive
                others = np.setdiff1d(pool, refs)
                pick = [rng.choice(refs)] + list(rng.choice(others, size=cfg.per_class - 1,
                                                              replace=len(others) < cfg.per_class - 1))
            else:
                pick = list(rng.choice(pool, size=cfg.per_class, replace=len(pool) < cfg.per_class))
            idx += pick
            labels += [k] * cfg.per_class
        if self.images:
            for k in rng.choice(self.images, size=min(cfg.image_classes, len(self.images)), replace=False):
                idx += list(rng.choice(self.by_class[k], size=2, replace=len(self.by_class[k]) < 2))
                labels += [k] * 2
        if len(self.unlabelled):
            base = len(self.crops.classes)
            for n, i in enumerate(rng.choice(self.unlabelled, size=cfg.unlabelled, replace=False)):
                idx += [i, i]
                labels += [base + n] * 2
        return np.array(idx), np.array(labels)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss of unit embeddings z (B, D) with integer labels (B,)."""
    sim = z @ z.T / temperature
    B = z.shape[0]
    eye = torch.eye(B, dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    loss = -(logp * pos).sum(1)[has] / n_pos[has]
    return loss.mean()


# --- validation and calibration ----------------------------------------------------------------------------------


def synthetic_eval_set(seeds, folder: Path, *, pages: int = 3, size=(900, 1273)) -> list[Path]:
    """Write synthetic chapters (cast 3..5) under ``folder``; returns their ground_truth.json paths."""
    from manga_pipeline.synthetic import generate_chapter, write_chapter

    out = []
    for n, seed in enumerate(seeds):
        path = folder / f"chapter_{seed}" / "ground_truth.json"
        if not path.exists():
            write_chapter(generate_chapter(pages, seed=int(seed), size=size, cast_size=3 + n % 3), path.parent)
        out.append(path)
    return out


def fit_calibration(rows, *, l2: float = 1.0) -> tuple[float, float, float]:
    """Logistic regression of right/wrong on (best, best - second): Newton steps on standardised features with
    an L2 penalty (well-posed even when the classes separate), mapped back to raw similarities."""
    F_ = np.array([[b, b - s] for b, s, _ in rows], np.float64)
    y = np.array([float(r) for _, _, r in rows])
    if len(rows) < 10 or y.min() == y.max():
        return (20.0, 0.0, -15.0)  # nothing to fit: the untrained default
    mu, sd = F_.mean(0), F_.std(0) + 1e-6
    X = np.column_stack([(F_ - mu) / sd, np.ones(len(F_))])
    w = np.zeros(3)
    lam = np.array([l2, l2, 0.0])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -30, 30)))
        g = X.T @ (p - y) + lam * w
        H = (X * (p * (1 - p))[:, None]).T @ X + np.diag(lam + 1e-9)
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    a, b = w[0] / sd[0], w[1] / sd[1]
    c = w[2] - a * mu[0] - b * mu[1]
    return float(a), float(b), float(c)


FAR_TARGET = 0.07  # share of unknown characters the default threshold may name on the validation chapters


def _rows(S: np.ndarray, truth: list[str], names: list[str]) -> list[tuple[float, float, bool]]:
    """(best, runner-up, right?) per body from similarities S (n, m)."""
    out = []
    for i, t in enumerate(truth):
        order = np.argsort(-S[i])
        second = float(S[i, order[1]]) if len(order) > 1 else 0.0
        out.append((float(S[i, order[0]]), second, names[order[0]] == t))
    return out


def _operating_point(embedder: Embedder, chapters, config) -> tuple[float, float]:
    """(accuracy with the full bank, false-assignment rate with each name left out in turn) of chapter naming."""
    from .identify import Identifier
    from .identify_eval import _run

    right = total = n_unk = n_false = 0
    for items, scored, truth, bank in chapters:
        pred, _, _ = _run(Identifier(bank, config, embedder), items, scored)
        right += sum(pred[k] == truth[k] for k in scored)
        total += len(scored)
        for drop, _ in bank:
            pred, _, _ = _run(Identifier([b for b in bank if b[0] != drop], config, embedder), items, scored)
            mine = [k for k in scored if truth[k] == drop]
            n_unk += len(mine)
            n_false += sum(pred[k] is not None for k in mine)
    return right / max(total, 1), n_false / max(n_unk, 1)


def validate(embedder: Embedder, gt_paths, *, calibrate: bool = False) -> dict:
    """Accuracy etc. on synthetic chapters with banks from the colour references.

    ``calibrate``: fit ``calib`` (logistic regression on full and leave-one-out banks), then move its intercept
    so that the default threshold (0.80) is the operating point: the best accuracy whose leave-one-character-out
    false-assignment rate stays within FAR_TARGET."""
    from .identify import Identifier, IdentifierConfig
    from .identify_eval import bank_from_spec, evaluate, load_annotations

    config = IdentifierConfig()
    rows, chapters, loaded = [], [], []
    for path in gt_paths:
        pages, doc = load_annotations(path)
        bank, used, _ = bank_from_spec("references", pages, doc, path, embedder)
        loaded.append((pages, bank, used))
        ident = Identifier(bank, config, embedder)
        embs = [ident.embed_characters(p.gray, p.det) for p in pages]
        scored = [(p, i) for p, page in enumerate(pages) for i in range(len(page.truth)) if (p, i) not in used]
        truth = {(p, i): pages[p].truth[i] for p, i in scored}
        chapters.append(([(p.det, e) for p, e in zip(pages, embs)], scored, truth, bank))
        if calibrate:
            names = [n for n, _ in bank]
            S = np.concatenate([ident.similarities(e) for e in embs])
            T = [t for page in pages for t in page.truth]
            for j in range(-1, len(names)):
                keep = [k for k in range(len(names)) if k != j]
                rows += _rows(S[:, keep], T, [names[k] for k in keep])
    out = {}
    if calibrate:
        a, b, c = fit_calibration(rows)
        best = None
        for shift in np.linspace(-6.0, 6.0, 25):
            embedder.net.calib.copy_(torch.tensor([a, b, c + shift]))
            acc, far = _operating_point(embedder, chapters, config)
            key = (far <= FAR_TARGET, acc if far <= FAR_TARGET else -far)
            if best is None or key > best[0]:
                best = (key, shift, acc, far)
        embedder.net.calib.copy_(torch.tensor([a, b, c + best[1]]))
        out["calibration_shift"] = round(float(best[1]), 3)
    results = [evaluate(pages, bank, used, embedder, config) for pages, bank, used in loaded]
    for k in ("accuracy", "known_accuracy", "false_assignment_rate", "cluster_purity"):
        vals = [r[k] for r in results if r.get(k) is not None]
        w = [r["bodies"] if k != "false_assignment_rate" else r["unknown_bodies"] for r in results if r.get(k) is not None]
        out[k] = round(float(np.average(vals, weights=w)), 4) if vals else None
    out["bodies"] = int(sum(r["bodies"] for r in results))
    return out


# --- the loop ---------------------------------------------------------------------------------------------------


def train(crops: CropSet, cfg: TrainConfig, *, log=print, val_dir: Path | None = None):
    """Train a network on ``crops``; returns (net, metrics). Single-threaded unless torch says otherwise."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = build_embedder(cfg.embed, seed=cfg.seed).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    sampler = BatchSampler(crops, cfg, rng)
    t0, avg = time.time(), None
    for step in range(cfg.steps):
        idx, labels = sampler.sample()
        x = augment(crops.images[idx], crops.boxes[idx], cfg.embed.size, rng)
        z = net(x)
        loss = supcon_loss(z, torch.from_numpy(labels), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        avg = lv if avg is None else 0.98 * avg + 0.02 * lv
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"step {step + 1}/{cfg.steps} loss {avg:.3f} batch {len(idx)} {time.time() - t0:.0f}s")
    net.eval()
    metrics = {"train_seconds": round(time.time() - t0, 1), "final_loss": round(float(avg), 4)}
    embedder = Embedder(net, "identifier.training", True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(val_dir) if val_dir else Path(tmp)
        gts = synthetic_eval_set(VAL_SEEDS[:cfg.val_chapters], folder)
        metrics["synthetic_val"] = validate(embedder, gts, calibrate=True)
    metrics["calibration"] = [round(float(v), 4) for v in net.calib]
    log(f"validation ({cfg.val_chapters} synthetic chapters from seed {VAL_SEEDS[0]}, references): "
        f"{metrics['synthetic_val']}")
    return net, metrics


def config_json(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["embed"] = cfg.embed.to_json()
    return d
