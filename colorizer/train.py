"""Train the colorizer, validate it on held-out panels, save ``weights/colorizer-<tag>.pt`` and register it.

Loss: ``l1_weight * L1(a*b*/100) + gan_weight * non-saturating PatchGAN loss``. The head is a palette-slot mixture
(see ``colorizer.model``), which already keeps reference colours saturated where a reference exists; the GAN term
is optional (``gan_weight`` 0 turns the discriminator off entirely).

Run as ``python -m colorizer.train --tag synthetic-v1 --steps 2000 --seed 0`` (the CLI's
``manga-color train colorizer`` takes the same flags).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import weights as weights_registry
from colorizer import data as D
from colorizer.conditioning import collate
from colorizer.evaluate import evaluate
from colorizer.infer import model_from_file, state_to_file
from colorizer.model import AB_SCALE, ColorizerConfig, build_colorizer, build_discriminator, count_parameters
from manga_pipeline.fsutil import atomic_path

SOURCES = ("synthetic", "real", "characters", "toy")
CHROMA_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)


@dataclass(frozen=True)
class TrainConfig:
    tag: str = "synthetic-v1"
    steps: int = 2000
    batch: int = 8
    lr: float = 1e-3
    seed: int = 0
    size: int = 256  # working long side (the model's cfg.size)
    crop: int = 128  # square training crops cut from panels at working resolution
    data: tuple[str, ...] = ("synthetic", "real")
    synthetic_fraction: float = 0.6  # share of each batch from synthetic panels when both sources are used
    synthetic_chapters: int = 24
    synthetic_pages: int = 4
    real_samples: int = 1200
    toy_samples: int = 0  # the toy source (tests / smoke runs)
    real_exclude: tuple[str, ...] = ()  # "folder/name-prefix" entries kept out of the real source
    # the "characters" source: annotated Pepper&Carrot pages of these episodes (see data.character_panel_samples)
    character_episodes: tuple[str, ...] = ("episode-01", "episode-04")
    prior: bool = False  # the model reads the references' lightness prior (ColorizerConfig.prior_channels)
    table_dropout: float = 0.1  # with prior: chance a reference loses its lightness table in a training item
    l1_weight: float = 1.0
    gan_weight: float = 0.0
    threads: int = 1
    device: str = "cpu"
    time_limit_s: float = 0.0  # stop training early after this many seconds of steps (0 = no limit)
    widths: tuple[int, int, int] = (32, 64, 128)
    mid_width: int = 128
    global_dim: int = 128
    half: bool = True  # save fp16 when it keeps validation accuracy (checked; else fp32)
    out_dir: Path = weights_registry.WEIGHTS_DIR
    manifest: Path = weights_registry.MANIFEST
    make_default: bool = True

    def __post_init__(self):
        object.__setattr__(self, "data", tuple(self.data))
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "manifest", Path(self.manifest))
        bad = [s for s in self.data if s not in SOURCES]
        if bad or not self.data:
            raise ValueError(f"unknown data sources {bad}; choose from {SOURCES}")
        if self.crop % 8 or self.crop > self.size:
            raise ValueError(f"crop must be a multiple of 8 and <= size, got {self.crop}")
        held = [e for e in self.character_episodes if any(e.startswith(v) for v in D.PC_VAL_EPISODES)]
        if held:
            raise ValueError(f"character episodes {held} are held out for validation and the Pepper&Carrot benchmark")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    def model_config(self) -> ColorizerConfig:
        return ColorizerConfig(size=self.size, widths=self.widths, mid_width=self.mid_width,
                               global_dim=self.global_dim, prior_channels=self.prior)

    def command(self) -> str:
        """The CLI command that reproduces this run (non-default options spelled out)."""
        parts = ["manga-color train colorizer", f"--tag {self.tag}", f"--steps {self.steps}", f"--seed {self.seed}"]
        default = TrainConfig()
        for f in dataclasses.fields(self):
            if f.name in ("tag", "steps", "seed", "out_dir", "manifest", "make_default"):
                continue
            v, d = getattr(self, f.name), getattr(default, f.name)
            if v != d:
                flag = "--" + f.name.replace("_", "-")
                if isinstance(v, bool):
                    parts.append(flag if v else "--no-" + f.name.replace("_", "-"))
                elif isinstance(v, tuple):
                    parts.append(f"{flag} {','.join(map(str, v))}")
                else:
                    parts.append(f"{flag} {v}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["out_dir"], d["manifest"] = str(self.out_dir), str(self.manifest)
        d["data"], d["widths"] = list(self.data), list(self.widths)
        return d


def _synthetic_train_seeds(cfg: TrainConfig) -> list[int]:
    base = 1000 + 10_000 * cfg.seed
    seeds = [base + i for i in range(cfg.synthetic_chapters)]
    assert max(seeds) < min(D.SYNTH_VAL_SEEDS), "training seeds must never reach the validation seeds"
    return seeds


def _build_pools(cfg: TrainConfig, log: Callable[[str], None]):
    pools: dict[str, list] = {}
    val: dict[str, list] = {}
    tune: dict[str, list] = {}
    folders: list[str] = []
    if "synthetic" in cfg.data:
        if D.synthetic_available():
            pools["synthetic"] = D.synthetic_panel_samples(_synthetic_train_seeds(cfg), size=cfg.size,
                                                           pages=cfg.synthetic_pages, min_side=cfg.crop,
                                                           progress=log)
            val["synthetic"] = D.synthetic_val_samples(size=cfg.size, pages=cfg.synthetic_pages)
            tune["synthetic"] = D.synthetic_val_samples(size=cfg.size, pages=cfg.synthetic_pages,
                                                        seeds=D.SYNTH_TUNE_SEEDS)
            folders.append("manga_pipeline.synthetic (generated)")
        else:
            log("synthetic source requested but manga_pipeline.synthetic is not available: skipped")
    if "real" in cfg.data:
        real = D.real_panel_samples(cfg.real_samples, size=cfg.size, seed=cfg.seed, min_side=cfg.crop,
                                    exclude=cfg.real_exclude, progress=log)
        if real:
            pools["real"] = real
            val["real"] = D.real_val_samples(size=cfg.size)
            tune["real"] = D.real_val_samples(size=cfg.size, pages=D.REAL_TUNE)
            used = D.real_files("train", exclude=cfg.real_exclude)
            folders += [f"../shared/data/color/{f}" for f in sorted(used)]
        else:
            log(f"real source requested but {D.shared_data_dir() / 'color'} is absent: skipped")
    if "characters" in cfg.data:
        chars = D.character_panel_samples(cfg.character_episodes, size=cfg.size, seed=cfg.seed, min_side=cfg.crop,
                                          progress=log)
        if chars:
            pools["characters"] = chars
            # never trained on: the held-out episode's own pages, references from its other pages
            val["characters"] = D.character_panel_samples(D.PC_VAL_EPISODES, size=cfg.size, seed=cfg.seed + 1,
                                                          variants=1)
            folders.append(f"../shared/data/{D.PC_ANNOTATIONS} ({', '.join(cfg.character_episodes)})")
        else:
            log(f"characters source requested but {D.shared_data_dir() / D.PC_ANNOTATIONS} is absent: skipped")
    if "toy" in cfg.data:
        n = max(cfg.toy_samples, 4)
        pools["toy"] = D.toy_panel_samples(n, size=cfg.size, seed=cfg.seed, min_side=cfg.crop)
        val["toy"] = D.toy_panel_samples(max(2, n // 4), size=cfg.size, seed=cfg.seed + 999_999)
        folders.append("colorizer.data.toy_panel_samples (generated)")
    pools = {k: v for k, v in pools.items() if v}
    if not pools:
        raise RuntimeError(f"no training data: none of the sources {cfg.data} is available")
    return pools, val, tune, folders


def _source_weights(cfg: TrainConfig, pools: dict) -> dict[str, float]:
    if "synthetic" in pools and len(pools) > 1:
        rest = (1.0 - cfg.synthetic_fraction) / (len(pools) - 1)
        return {k: (cfg.synthetic_fraction if k == "synthetic" else rest) for k in pools}
    return {k: 1.0 / len(pools) for k in pools}


def train_colorizer(cfg: TrainConfig, *, progress: Callable[[str], None] | None = None
                    ) -> weights_registry.WeightsSpec:
    """Train, validate, save ``<out_dir>/colorizer-<tag>.pt`` and register it in ``cfg.manifest``."""
    log = progress or (lambda msg: None)
    if cfg.out_dir.resolve() != cfg.manifest.parent.resolve():
        raise ValueError("out_dir must be the manifest's folder (the registry keeps files next to it)")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    t0 = time.time()
    pools, val, tune, folders = _build_pools(cfg, log)
    prep_s = time.time() - t0
    log(f"data ready in {prep_s:.0f}s: " + ", ".join(f"{k} {len(v)} panels" for k, v in pools.items())
        + " | val: " + ", ".join(f"{k} {len(v)}" for k, v in val.items()))

    mcfg = cfg.model_config()
    G = build_colorizer(mcfg).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5 if cfg.gan_weight > 0 else 0.9, 0.99))
    Dnet = opt_d = None
    if cfg.gan_weight > 0:
        Dnet = build_discriminator(mcfg).to(device)
        opt_d = torch.optim.Adam(Dnet.parameters(), lr=cfg.lr, betas=(0.5, 0.99))
    weights = _source_weights(cfg, pools)
    names = sorted(pools)
    probs = np.array([weights[n] for n in names])
    log(f"colorizer {count_parameters(G):,} parameters; sources {dict(zip(names, probs.round(2)))}")

    t1 = time.time()
    steps_done = 0
    ema = None
    for step in range(cfg.steps):
        lr = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps))))
        for o in (opt_g, opt_d):
            if o is not None:
                for g in o.param_groups:
                    g["lr"] = lr
        items = []
        for _ in range(cfg.batch):
            src = names[int(rng.choice(len(names), p=probs))]
            s = pools[src][int(rng.integers(len(pools[src])))]
            items.append(D.training_item(s, cfg.crop, rng, table_dropout=cfg.table_dropout if cfg.prior else 0.0))
        inputs = [t.to(device) for t in collate([it[0] for it in items])]
        L = inputs[0]
        target = torch.from_numpy(np.stack([it[1] for it in items])).to(device)
        G.train()
        pred = G(*inputs)
        l1 = (pred - target).abs().mean() / AB_SCALE
        loss = cfg.l1_weight * l1
        adv = torch.zeros(())
        if Dnet is not None:
            # discriminator step: real (L, true ab) vs fake (L, predicted ab)
            Dnet.train()
            d_real = Dnet(L, target)
            d_fake = Dnet(L, pred.detach())
            loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            g_fake = Dnet(L, pred)
            adv = F.binary_cross_entropy_with_logits(g_fake, torch.ones_like(g_fake))
            loss = loss + cfg.gan_weight * adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(G.parameters(), 5.0)
        opt_g.step()
        steps_done = step + 1
        l1v = l1.item()
        ema = l1v if ema is None else 0.98 * ema + 0.02 * l1v
        if steps_done % 50 == 0 or steps_done == cfg.steps:
            log(f"step {steps_done}/{cfg.steps} l1 {ema * AB_SCALE:.2f} (a*b* units) adv {adv.item():.3f} "
                f"lr {lr:.2e} {time.time() - t1:.0f}s")
        if cfg.time_limit_s and time.time() - t1 > cfg.time_limit_s:
            log(f"time limit reached after {steps_done} steps")
            break
    train_s = time.time() - t1

    # --- chroma scale of the free colour, tuned on the tuning split (never the reported one)
    G = G.cpu().eval()
    scale_scores = {}
    if tune:
        for scale in CHROMA_SCALES:
            G.free_chroma_scale.fill_(scale)
            scale_scores[scale] = float(np.mean([evaluate(G, s)["ratio"] for s in tune.values() if s]))
        best = min(scale_scores, key=scale_scores.get)
        G.free_chroma_scale.fill_(best)
        log("free chroma scale: " + ", ".join(f"{k}: {v:.3f}" for k, v in scale_scores.items()) + f" -> {best}")

    # --- validation, on what ships (fp16 weights when they keep accuracy)
    blob = state_to_file(G, mcfg, half=cfg.half)
    shipped, _ = model_from_file(blob)
    metrics: dict = {"train_steps": steps_done, "train_seconds": round(train_s, 1), "prep_seconds": round(prep_s, 1),
                     "parameters": count_parameters(G), "free_chroma_scale": float(G.free_chroma_scale),
                     "tune_ratio_by_scale": {str(k): round(v, 4) for k, v in scale_scores.items()}}
    for name, samples in val.items():
        if not samples:
            continue
        m = evaluate(shipped, samples)
        metrics[f"val_{name}"] = m
        if name == "synthetic":
            metrics["val_synthetic_no_refs"] = evaluate(shipped, samples, use_refs=False)
        if scale_scores and float(G.free_chroma_scale) != 1.0:
            shipped.free_chroma_scale.fill_(1.0)
            metrics[f"val_{name}_untuned"] = evaluate(shipped, samples)
            shipped.free_chroma_scale.fill_(float(G.free_chroma_scale))
        log(f"val {name}: {json.dumps(m)}")
    if cfg.half:
        full = {name: evaluate(G, s)["de2000"] for name, s in val.items() if s}
        worst = max((abs(full[n] - metrics[f"val_{n}"]["de2000"]) for n in full), default=0.0)
        if worst > 0.05:
            log(f"fp16 changes validation ΔE2000 by {worst:.3f}: saving fp32")
            blob = state_to_file(G, mcfg, half=False)
            for name, samples in val.items():
                if samples:
                    metrics[f"val_{name}"] = evaluate(G, samples)
        metrics["fp16_vs_fp32_de2000_max_diff"] = round(worst, 4)
    metrics["saved_dtype"] = "float16" if blob["state_dict"][next(iter(blob["state_dict"]))].dtype == torch.float16 \
        else "float32"

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.out_dir / f"colorizer-{cfg.tag}.pt"
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    path.chmod(0o644)  # the temporary file was private; a shipped weights file is readable by all
    metrics["file_bytes"] = path.stat().st_size
    notes = ("validation: synthetic chapters seeds " + ",".join(map(str, D.SYNTH_VAL_SEEDS))
             + "; real: held-out " + "; ".join(f"{k}/{','.join(v)}" for k, v in D.REAL_VAL.items())
             + "; reported on " + "; ".join(f"{k}/{','.join(v)}" for k, v in D.REAL_VAL_REPORTED.items())
             + " (2x3 grid crops, no reference), free chroma scale tuned on "
             + "; ".join(f"{k}/{','.join(v)}" for k, v in D.REAL_TUNE.items())
             + " and synthetic seed " + ",".join(map(str, D.SYNTH_TUNE_SEEDS)) + ". "
             "ΔE2000 uses the true L* for prediction and gray alike.")
    spec = weights_registry.register(
        f"colorizer.{cfg.tag}", path, command=cfg.command(), data=folders, seed=cfg.seed, metrics=metrics,
        config={"model": mcfg.to_dict(), "train": {k: v for k, v in cfg.to_dict().items()
                                                   if k not in ("out_dir", "manifest")}},
        device=cfg.device, notes=notes, make_default=cfg.make_default, manifest=cfg.manifest,
    )
    log(f"saved {path} ({metrics['file_bytes'] / 1e6:.2f} MB) as {spec.short}")
    return spec


def _parse_args(argv=None, prog: str = "manga-color train colorizer") -> TrainConfig:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    default = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        v = getattr(default, f.name)
        if isinstance(v, bool):
            p.add_argument(flag, dest=f.name, action="store_true", default=v)
            p.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false")
        elif isinstance(v, tuple):
            conv = int if f.name == "widths" else str
            p.add_argument(flag, dest=f.name, default=v, type=lambda s, c=conv: tuple(c(x) for x in s.split(",")))
        else:
            p.add_argument(flag, dest=f.name, default=v, type=type(v))
    return TrainConfig(**vars(p.parse_args(argv)))


def main(argv=None, prog: str = "manga-color train colorizer") -> None:
    cfg = _parse_args(argv, prog)
    t = time.time()
    spec = train_colorizer(cfg, progress=lambda m: print(f"[{time.time() - t:6.0f}s] {m}", flush=True))
    print(json.dumps({"weights": spec.short, "metrics": spec.metrics}, indent=2))


if __name__ == "__main__":
    main()
