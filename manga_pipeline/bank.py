"""Building character-bank entries from a user's reference images and B/W samples.

An entry stores, per character:
- ``features["references"]``: per colour reference, the colorizer's reference features (Lab palette by
  area-weighted k-means with the background removed, 6x6x6 RGB histogram); ``features["palette"]`` the first
  reference's palette as ``#rrggbb`` (most area first);
- ``descriptors``: float32 (n, D) identity embeddings of views of every image (``detectors.identify``), made by
  the identity network named in ``features["identity"]["weights"]``. When the shipped network changes, the
  stored descriptors are stale: ``identity_descriptors`` recomputes them from the stored images.

A reference record stored before the colorizer's lightness table existed (no ``"l_table"``) is re-extracted from
the stored reference image by ``colour_reference``, so every registered character gets the lightness prior.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .imageio import ImageError, decode_image
from .records import check_name


@dataclass(frozen=True)
class CharacterBuild:
    """What ``Workspace.add_character`` stores: features (JSON), descriptors float32 (n, D) and the image bytes."""

    name: str
    features: dict
    descriptors: np.ndarray
    images: list[tuple[str, bytes, str]]


def _descriptors(kind: str, img, embedder) -> np.ndarray:
    from detectors.identify import describe_reference, describe_sample

    if kind == "reference":
        return describe_reference(img.rgb, embedder)
    return describe_sample(img.gray, embedder)


def build_character(name: str, references=(), samples=(), *, embedder=None) -> CharacterBuild:
    """Derive a bank entry from colour ``references`` and B/W ``samples`` (paths or (label, bytes) pairs).

    features = {"references": [ReferenceFeatures JSON per colour reference], "palette": [#rrggbb ...],
    "identity": {"weights": identity network id, "views": n}}; the first reference is the one the colorizer
    uses by default.
    """
    from colorizer.reference import extract_reference
    from detectors.identify import default_embedder

    check_name(name)
    if not references and not samples:
        raise ImageError(f"character {name!r} needs at least one --reference or --sample image")
    embedder = embedder or default_embedder()
    feats, descs, images = [], [], []
    for kind, items in (("reference", references), ("sample", samples)):
        for item in items:
            label, data = (str(item), Path(item).read_bytes()) if not isinstance(item, tuple) else item
            img = decode_image(data, label)
            if kind == "reference":
                feats.append(extract_reference(img.rgb))
            descs.append(_descriptors(kind, img, embedder))
            images.append((kind, data, label))
    desc = np.concatenate(descs).astype(np.float32)
    features = {
        "references": [f.to_json() for f in feats],
        "palette": [palette_hex(f) for f in feats][0] if feats else [],
        "identity": {"weights": embedder.weights_id, "views": int(len(desc))},
    }
    return CharacterBuild(name, features, desc, images)


def identity_descriptors(entry, embedder) -> np.ndarray:
    """float32 (n, D) descriptors of a ``BankEntry`` for ``embedder``: the stored ones when that network made
    them, else recomputed from the entry's stored images (an entry registered before the weights changed)."""
    made_by = (entry.features.get("identity") or {}).get("weights")
    if made_by == embedder.weights_id and entry.descriptors.ndim == 2 and entry.descriptors.shape[1] == embedder.dim:
        return entry.descriptors
    descs = []
    for kind, path in entry.images:
        try:
            img = decode_image(Path(path).read_bytes(), Path(path).name)
        except (OSError, ImageError) as exc:
            raise ImageError(f"character {entry.name!r}: stored image {path} cannot be read ({exc})") from None
        descs.append(_descriptors(kind, img, embedder))
    return np.concatenate(descs).astype(np.float32) if descs else np.zeros((0, embedder.dim), np.float32)


def colour_reference(entry):
    """The colorizer's ``ReferenceFeatures`` of a ``BankEntry`` (its first colour reference), or None when it has
    none. A record without a lightness table (registered before tables existed) is extracted again from the
    entry's first stored reference image, exactly as ``build_character`` does today."""
    from colorizer.reference import ReferenceFeatures, extract_reference

    refs = entry.features.get("references") or []
    if not refs:
        return None
    feats = ReferenceFeatures.from_json(refs[0])
    if feats.l_table is not None:
        return feats
    stored = [path for kind, path in entry.images if kind == "reference"]
    if not stored:
        raise ImageError(f"character {entry.name!r}: its reference record has no lightness table and no stored "
                         "reference image to compute it from; register the reference again")
    try:
        img = decode_image(Path(stored[0]).read_bytes(), Path(stored[0]).name)
    except (OSError, ImageError) as exc:
        raise ImageError(f"character {entry.name!r}: stored reference {stored[0]} cannot be read ({exc})") from None
    return extract_reference(img.rgb)


def palette_hex(features) -> list[str]:
    """The palette colours of ReferenceFeatures as #rrggbb, most area first (zero-weight slots dropped)."""
    import cv2

    out = []
    for lab, w in zip(features.palette, features.weights):
        if w <= 0:
            continue
        rgb = cv2.cvtColor(np.asarray(lab, np.float32).reshape(1, 1, 3), cv2.COLOR_Lab2RGB)[0, 0]
        r, g, b = (int(np.clip(round(float(v) * 255), 0, 255)) for v in rgb)
        out.append(f"#{r:02x}{g:02x}{b:02x}")
    return out
