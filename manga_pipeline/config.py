"""One frozen configuration tree with defaults in code; a TOML file and CLI flags override it.

Overrides are dotted keys (``detect.rtl = false``); an unknown key is an error that names the closest valid one.
"""
from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class DetectConfig:
    rtl: bool = True  # manga reading order: right-to-left rows; false for western comics
    backend: str = "auto"  # "classical", "yolo" or "auto" (YOLO when detector weights are shipped)
    weights: str | None = None  # detector weights tag; None = the shipped default
    # the body/face network: a figures.* weights tag; None = the shipped default (if any), "main" = the main
    # detector's own body and face classes
    figures: str | None = None


@dataclass(frozen=True)
class IdentifyConfig:
    threshold: float = 0.80  # below this calibrated probability a character stays unknown
    margin: float = 0.03     # the best name must lead the runner-up by this much similarity


@dataclass(frozen=True)
class ColorizeConfig:
    weights: str | None = None  # colorizer weights tag; None = the shipped default
    scene: str | None = None    # bank name used as the page-level reference for every panel
    page_pass: bool = True      # colour art outside panels (splash pages, bleeds) with a whole-page pass
    # "flat": paper inside coloured areas takes the colour (ink, tones, text keep their L*), as a colourist's
    # flats; "luminance": every pixel keeps its L*, so white paper stays white (see layout.compose)
    blend: str = "flat"
    max_darken: float = 30.0    # with "flat": how far (L* units) paper may darken to hold its colour
    # snap each named character's colours to its reference palette: the same colours on every page; off by
    # default because on real art it made colours worse (BENCHMARKS.md: Pepper&Carrot 1.37x gray vs 1.25x)
    palette_anchor: bool = False
    anchor_l_weight: float = 1.5  # with palette_anchor: weight of the lightness gap against the a*b* distance
    # "network" (the colorizer) or "prior": the references' lightness tables alone, no network (a measuring
    # baseline, see colorizer.infer.TRANSFERS and BENCHMARKS.md)
    transfer: str = "network"

    def __post_init__(self):
        if self.blend not in ("flat", "luminance"):
            raise ConfigError(f"colorize.blend must be 'flat' or 'luminance', got {self.blend!r}")
        if self.transfer not in ("network", "prior"):
            raise ConfigError(f"colorize.transfer must be 'network' or 'prior', got {self.transfer!r}")
        if self.anchor_l_weight < 0:
            raise ConfigError(f"colorize.anchor_l_weight must be >= 0, got {self.anchor_l_weight}")
        if not 0.0 <= self.max_darken <= 100.0:
            raise ConfigError(f"colorize.max_darken must be within 0..100 (L* units), got {self.max_darken}")


@dataclass(frozen=True)
class RunConfig:
    skip_color_pages: bool = True  # pages already in colour are passed through, not recoloured


@dataclass(frozen=True)
class PipelineConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    identify: IdentifyConfig = field(default_factory=IdentifyConfig)
    colorize: ColorizeConfig = field(default_factory=ColorizeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _valid_keys(cls, prefix="") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            keys += _valid_keys(f.default_factory, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _coerce(value: Any, current: Any, key: str) -> Any:
    if isinstance(current, bool) or key.endswith(("rtl", "page_pass", "skip_color_pages", "palette_anchor")):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if value in ("", "none", "None") and current is None:
        return None
    return value if value is None else str(value)


def _flatten(d: dict, prefix="") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    valid = _valid_keys(PipelineConfig)
    for key, value in overrides.items():
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown config key {key!r}{hint}")
        section, name = key.split(".")
        sub = getattr(cfg, section)
        sub = dataclasses.replace(sub, **{name: _coerce(value, getattr(sub, name), key)})
        cfg = dataclasses.replace(cfg, **{section: sub})
    return cfg


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then the TOML file (if given), then ``overrides`` (dotted keys), in that order."""
    cfg = PipelineConfig()
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from None
        cfg = apply_overrides(cfg, _flatten(data))
    return apply_overrides(cfg, overrides or {})
