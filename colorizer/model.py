"""The colorization network (Iizuka et al. 2016 / Comicolorization fusion) and its PatchGAN discriminator.

Inputs (all at working resolution h x w, multiples of 8; see ``colorizer.conditioning`` which builds them):
- ``L``: float (B, 1, h, w), the B/W panel as L*/50 - 1.
- ``hints``: float (B, 3, h, w): hint a*/100, b*/100 and a 0/1 hint mask.
- ``region_ids``: int64 (B, h, w): 0 = scene (no character), r = inside character region r (1..R).
- ``refs``: float (B, R+1, D): reference vectors (``ReferenceFeatures.vector()``); row 0 is the scene's.
- ``has_ref``: float (B, R+1): 1 where that row holds a real reference, else 0 (its vector is ignored).
- ``prior``: float (B, 3, h, w): the references' lightness prior (a*/100, b*/100, confidence; zero where no
  reference has a table). Read only when ``cfg.prior_channels``; a model without them ignores it.

Output: float (B, 2, h, w) a*b* in Lab units (about -128..127).

Pieces: a low-level network (strided convs at 1/2, 1/4, 1/8), a mid-level network (1/8), a global network
(whole panel -> vector, fused with the scene reference, as Comicolorization feeds its reference histogram),
a fusion layer that also receives the per-character reference map, and a colorization network decoding to
a*b* with skips from the low-level features. Per-character spatial conditioning: each reference vector is
projected to ``ref_channels`` channels and painted inside its own region (the scene's elsewhere), plus
"character reference here" and "scene reference here" mask channels; the map enters at the input, at the
fusion and at the head, so two characters in one panel get their own colours.

The head is a palette-slot mixture (RESEARCH.md: L1 regression alone drifts to gray on small data): per pixel it
predicts a softmax over the region's reference palette colours plus one free colour, and the output is the
mixture. Where a reference is present the net can pick a palette colour exactly instead of averaging.
With ``prior_channels`` the lightness prior enters with the input (so the low-level network and, through the
skip, the decoder see it) and is one more candidate colour of the mixture, available where its confidence > 0.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from colorizer.reference import PALETTE_SLOTS, VECTOR_DIM

AB_SCALE = 100.0  # the network works in a*b*/100


@dataclass(frozen=True)
class ColorizerConfig:
    """size: working long side in pixels; widths: channels at 1/2, 1/4, 1/8 resolution."""

    size: int = 256
    widths: tuple[int, int, int] = (32, 64, 128)
    mid_width: int = 128
    global_dim: int = 128
    ref_dim: int = VECTOR_DIM
    ref_channels: int = 16
    palette_slots: int = PALETTE_SLOTS
    slot_dim: int = 16
    prior_channels: bool = False  # read the lightness prior (False keeps the synthetic-v1 architecture)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be 3 positive channel counts, got {self.widths}")
        if self.size < 16 or self.size % 8:
            raise ValueError(f"working size must be a multiple of 8 and >= 16, got {self.size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ColorizerConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown colorizer config keys {sorted(unknown)}; valid keys: {sorted(known)}")
        return cls(**d)


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.LeakyReLU(0.1, inplace=True))


class Colorizer(nn.Module):
    def __init__(self, cfg: ColorizerConfig):
        super().__init__()
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        C, K = cfg.ref_channels, cfg.palette_slots
        self.ref_proj = nn.Sequential(nn.Linear(cfg.ref_dim, 64), nn.LeakyReLU(0.1, inplace=True), nn.Linear(64, C))
        P = 3 if cfg.prior_channels else 0
        self.n_prior = 1 if cfg.prior_channels else 0  # the prior colour is an extra mixture candidate
        cin = 1 + 3 + C + 2 + P
        # low-level features
        self.low1 = nn.Sequential(_conv(cin, w1, 2), _conv(w1, w1))  # 1/2
        self.low2 = nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2))  # 1/4
        self.low3 = _conv(w2, w3, 2)  # 1/8
        # mid-level features
        self.mid = nn.Sequential(_conv(w3, cfg.mid_width), _conv(cfg.mid_width, cfg.mid_width))
        # global features: the whole panel -> vector, fused with the scene reference
        self.glob_conv = nn.Sequential(_conv(w3, w3, 2), _conv(w3, w3, 2))
        self.glob_fc = nn.Sequential(nn.Linear(w3, 2 * cfg.global_dim), nn.LeakyReLU(0.1, inplace=True))
        self.scene_fc = nn.Sequential(nn.Linear(cfg.ref_dim + 1, cfg.global_dim), nn.LeakyReLU(0.1, inplace=True))
        self.glob_out = nn.Sequential(nn.Linear(3 * cfg.global_dim, cfg.global_dim), nn.LeakyReLU(0.1, inplace=True))
        # fusion (mid + global + reference map at 1/8)
        self.fuse = _conv(cfg.mid_width + cfg.global_dim + C + 2, w3, k=1)
        # colorization network
        self.dec3 = _conv(w3, w3)
        self.red3 = _conv(w3, w2, k=1)
        self.dec2 = _conv(2 * w2, w2)
        self.red2 = _conv(w2, w1, k=1)
        self.dec1 = _conv(2 * w1 + cin, w1)
        # head at 1/2 resolution: slot logits (K palette slots [+ the prior] + 1 free colour) and the free colour
        self.head = nn.Sequential(_conv(w1 + 2 * K, w1), nn.Conv2d(w1, K + self.n_prior + 1 + 2, 3, 1, 1))
        # slot attention: a pixel's query against each palette colour's key, so "which colour goes here" can
        # depend on what the colour is (skin-like, dark, ...) and not only on its rank in the palette
        E = cfg.slot_dim
        self.query = nn.Conv2d(w1, E, 1)
        self.key = nn.Sequential(nn.Linear(4 + 1, 32), nn.LeakyReLU(0.1, inplace=True), nn.Linear(32, E))
        # scales the free (non-palette) colour; tuned after training on a split that is neither trained on nor
        # reported (RESEARCH.md: under uncertainty a desaturated answer beats a confident wrong hue)
        self.register_buffer("free_chroma_scale", torch.ones(()))
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        last = self.head[-1]
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)

    def forward(self, L: torch.Tensor, hints: torch.Tensor, region_ids: torch.Tensor, refs: torch.Tensor,
                has_ref: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        B, _, H, W = L.shape
        if H % 8 or W % 8:
            raise ValueError(f"input height and width must be multiples of 8, got {H}x{W}")
        if self.n_prior and (prior is None or prior.shape != (B, 3, H, W)):
            raise ValueError(f"this colorizer reads the lightness prior: need prior (B, 3, {H}, {W}), got "
                             f"{None if prior is None else tuple(prior.shape)}")
        K, P = self.cfg.palette_slots, self.n_prior
        # --- per-pixel reference map: each region's projected vector painted inside it
        proj = self.ref_proj(refs) * has_ref[..., None]  # (B, R+1, C)
        idx = region_ids.reshape(B, -1)
        ref_map = torch.gather(proj, 1, idx[..., None].expand(-1, -1, proj.shape[-1]))
        ref_map = ref_map.transpose(1, 2).reshape(B, -1, H, W)
        char_here = ((region_ids > 0).float() * torch.gather(has_ref, 1, idx).reshape(B, H, W))[:, None]
        scene_here = ((region_ids == 0).float() * has_ref[:, :1, None])[:, None]
        cond = torch.cat([ref_map, char_here, scene_here], 1)
        x0 = torch.cat([L, hints, cond] + ([prior] if P else []), 1)

        f1 = self.low1(x0)
        f2 = self.low2(f1)
        f3 = self.low3(f2)
        mid = self.mid(f3)
        g = self.glob_conv(f3).mean((2, 3))
        scene = self.scene_fc(torch.cat([refs[:, 0] * has_ref[:, :1], has_ref[:, :1]], 1))
        g = self.glob_out(torch.cat([self.glob_fc(g), scene], 1))
        cond8 = F.avg_pool2d(cond, 8)
        z = self.fuse(torch.cat([mid, g[:, :, None, None].expand(-1, -1, *mid.shape[2:]), cond8], 1))

        z = self.dec3(z)
        z = F.interpolate(self.red3(z), scale_factor=2, mode="nearest")
        z = self.dec2(torch.cat([z, f2], 1))
        z = F.interpolate(self.red2(z), scale_factor=2, mode="nearest")
        x0_2 = F.avg_pool2d(x0, 2)
        z = self.dec1(torch.cat([z, f1, x0_2], 1))

        # --- palette of the region under each pixel (at 1/2 resolution)
        pal = refs[..., : 4 * K].reshape(B, -1, K, 4)  # (L/100, a/100, b/100, weight) per slot
        valid = (pal[..., 3] > 0).float() * has_ref[..., None]  # (B, R+1, K)
        rid2 = region_ids[:, ::2, ::2]
        h2, w2 = rid2.shape[1:]
        idx2 = rid2.reshape(B, -1)

        def at_pixels(t):  # (B, R+1, n) -> (B, n, h2, w2)
            g_ = torch.gather(t, 1, idx2[..., None].expand(-1, -1, t.shape[-1]))
            return g_.transpose(1, 2).reshape(B, -1, h2, w2)

        slot_L = at_pixels(pal[..., 0])
        slot_ab = at_pixels(pal[..., 1:3].reshape(B, -1, 2 * K)).reshape(B, K, 2, h2, w2)
        slot_ok = at_pixels(valid)
        Lpix = (x0_2[:, :1] + 1.0) * 0.5  # L*/100
        # how far each palette colour's lightness is from this pixel's: the cue for which colour goes here
        dL = torch.where(slot_ok > 0, (Lpix - slot_L).abs(), torch.ones_like(slot_L))
        out = self.head(torch.cat([z, dL, slot_ok], 1))
        # keys per region and slot: (L, a, b, weight, rank) -> E
        rank = torch.linspace(0, 1, K, device=pal.device).expand(*pal.shape[:2], K)[..., None]
        keys = self.key(torch.cat([pal, rank], -1))  # (B, R+1, K, E)
        E = keys.shape[-1]
        keys = at_pixels(keys.reshape(B, keys.shape[1], K * E)).reshape(B, K, E, h2, w2)
        att = (self.query(z)[:, None] * keys).sum(2) / math.sqrt(E)  # (B, K, h2, w2)
        logits = out[:, : K + P + 1] + torch.cat([att, torch.zeros_like(att[:, :1 + P])], 1)
        free_ab = out[:, K + P + 1:] * self.free_chroma_scale
        cand_ok = [slot_ok]
        if P:
            prior2 = F.avg_pool2d(prior, 2)
            cand_ok.append((prior2[:, 2:3] > 0).float())
        mask = torch.cat(cand_ok + [torch.ones_like(slot_ok[:, :1])], 1)
        logits = logits.masked_fill(mask <= 0, -1e4)
        p = torch.softmax(logits, 1)
        ab = (p[:, :K, None] * slot_ab).sum(1) + p[:, K + P:] * free_ab
        if P:
            ab = ab + p[:, K:K + 1] * prior2[:, :2]
        ab = F.interpolate(ab, size=(H, W), mode="bilinear", align_corners=False)
        return ab * AB_SCALE


class PatchDiscriminator(nn.Module):
    """PatchGAN over (L, a, b) (inputs L*/50 - 1 and a*b*/100): one real/fake logit per ~22 px patch."""

    def __init__(self, cfg: ColorizerConfig, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 1, 3, 1, 1),
        )

    def forward(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([L, ab / AB_SCALE], 1))


def build_colorizer(cfg: ColorizerConfig) -> nn.Module:
    """An untrained colorizer; never loads weights (see ``colorizer.infer.Colorizer.load``)."""
    return Colorizer(cfg)


def build_discriminator(cfg: ColorizerConfig) -> nn.Module:
    return PatchDiscriminator(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
