"""Building character-bank entries from a user's reference images and B/W samples."""
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


def build_character(name: str, references=(), samples=()) -> CharacterBuild:
    """Derive a bank entry from colour ``references`` (paths or (name, bytes)) and B/W ``samples``.

    features = {"references": [ReferenceFeatures JSON per colour reference], "palette": [#rrggbb ...]}; the first
    reference is the one the colorizer uses by default.
    """
    from colorizer.reference import extract_reference
    from detectors.identify import describe_reference, describe_sample

    check_name(name)
    if not references and not samples:
        raise ImageError(f"character {name!r} needs at least one --reference or --sample image")
    feats, descs, images = [], [], []
    for kind, items in (("reference", references), ("sample", samples)):
        for item in items:
            label, data = (str(item), Path(item).read_bytes()) if not isinstance(item, tuple) else item
            img = decode_image(data, label)
            if kind == "reference":
                feats.append(extract_reference(img.rgb))
                descs.append(describe_reference(img.rgb))
            else:
                descs.append(describe_sample(img.gray))
            images.append((kind, data, label))
    features = {
        "references": [f.to_json() for f in feats],
        "palette": [palette_hex(f) for f in feats][0] if feats else [],
    }
    return CharacterBuild(name, features, np.concatenate(descs).astype(np.float32), images)


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
