"""Weights registry: the network files this project trained and ships, described by ``manifest.json``.

A weights file is addressed as ``arch.tag`` (e.g. ``colorizer.synthetic-v1``). ``manifest.json`` holds for each
one its file, sha256, the ``manga-color train ...`` command that reproduces it, the data folders it saw, the seed
and its validation metrics. Loading checks the sha256 first; nothing is ever downloaded. Building a network and
loading weights into it are separate steps (``build_*`` in each stage, ``load_state`` here).
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from manga_pipeline.fsutil import atomic_write_text, sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent
MANIFEST = WEIGHTS_DIR / "manifest.json"


class WeightsError(RuntimeError):
    """A weights file is unknown, missing or does not match its manifest entry."""


@dataclass(frozen=True)
class WeightsSpec:
    name_tag: str
    file: str
    sha256: str
    command: str
    data: tuple[str, ...] = ()
    seed: int = 0
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    created: str = ""
    device: str = "cpu"
    notes: str = ""

    @property
    def arch(self) -> str:
        return self.name_tag.split(".", 1)[0]

    @property
    def short(self) -> str:
        """How outputs name the weights that made them: ``arch.tag@sha12``."""
        return f"{self.name_tag}@{self.sha256[:12]}"


def _read_manifest(manifest: Path = MANIFEST) -> dict:
    if not manifest.exists():
        return {"weights": {}, "defaults": {}}
    return json.loads(manifest.read_text(encoding="utf-8"))


def list_specs(manifest: Path = MANIFEST) -> dict[str, WeightsSpec]:
    raw = _read_manifest(manifest)["weights"]
    return {k: WeightsSpec(**{**v, "data": tuple(v.get("data", ()))}) for k, v in raw.items()}


def default_tag(arch: str, manifest: Path = MANIFEST) -> str | None:
    """The shipped default weights of an architecture, or None when the project ships none yet."""
    return _read_manifest(manifest).get("defaults", {}).get(arch)


def get_spec(name_tag: str, manifest: Path = MANIFEST) -> WeightsSpec:
    specs = list_specs(manifest)
    if name_tag not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise WeightsError(f"unknown weights {name_tag!r}; shipped weights: {known}")
    return specs[name_tag]


def weights_path(name_tag: str, manifest: Path = MANIFEST) -> Path:
    """The verified file of ``name_tag``: exists and matches the manifest's sha256."""
    spec = get_spec(name_tag, manifest)
    path = manifest.parent / spec.file
    if not path.exists():
        raise WeightsError(f"weights file {path} is missing; rebuild it with: {spec.command}")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise WeightsError(
            f"weights file {path} does not match its manifest (sha256 {digest[:12]} != {spec.sha256[:12]}); "
            f"rebuild it with: {spec.command}"
        )
    return path


def load_state(name_tag: str, manifest: Path = MANIFEST) -> dict:
    """The verified state dict of ``name_tag`` (``torch.load(weights_only=True)``)."""
    import torch

    return torch.load(weights_path(name_tag, manifest), map_location="cpu", weights_only=True)


def register(
    name_tag: str,
    file: Path,
    *,
    command: str,
    data=(),
    seed: int = 0,
    metrics: dict | None = None,
    config: dict | None = None,
    device: str = "cpu",
    notes: str = "",
    make_default: bool = True,
    manifest: Path = MANIFEST,
) -> WeightsSpec:
    """Record ``file`` (already written, inside the manifest's folder) under ``name_tag``."""
    file = Path(file).resolve()
    try:
        rel = file.relative_to(manifest.parent.resolve())
    except ValueError as exc:
        raise WeightsError(f"weights file {file} must live in {manifest.parent}") from exc
    spec = WeightsSpec(
        name_tag=name_tag,
        file=str(rel),
        sha256=sha256_file(file),
        command=command,
        data=tuple(data),
        seed=int(seed),
        metrics=dict(metrics or {}),
        config=dict(config or {}),
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        device=device,
        notes=notes,
    )
    raw = _read_manifest(manifest)
    raw.setdefault("weights", {})[name_tag] = asdict(spec)
    if make_default:
        raw.setdefault("defaults", {})[spec.arch] = name_tag
    atomic_write_text(manifest, json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return spec
