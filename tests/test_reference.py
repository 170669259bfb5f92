"""Reference features: a character drawn on white gives back its own colours, never the paper's."""
import json

import cv2
import numpy as np
import pytest

from colorizer.metrics import delta_e2000
from colorizer.reference import HIST_BINS, L_BINS, VECTOR_DIM, ReferenceFeatures, extract_reference
from manga_pipeline.colorspace import rgb_to_lab

RED, BLUE, YELLOW, SKIN = (200, 30, 40), (30, 60, 190), (240, 210, 40), (245, 205, 175)


def _drawing(background=(255, 255, 255)) -> np.ndarray:
    """A 'character' of four flat colours with black outlines on a plain background."""
    img = np.empty((240, 180, 3), np.uint8)
    img[:] = background
    cv2.rectangle(img, (40, 100), (140, 220), RED, -1)
    cv2.rectangle(img, (40, 100), (140, 220), (0, 0, 0), 2)
    cv2.circle(img, (90, 60), 38, SKIN, -1)
    cv2.circle(img, (90, 60), 38, (0, 0, 0), 2)
    cv2.ellipse(img, (90, 30), (42, 16), 0, 0, 360, YELLOW, -1, cv2.LINE_AA)
    cv2.ellipse(img, (90, 30), (42, 16), 0, 0, 360, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.rectangle(img, (60, 150), (120, 200), BLUE, -1)
    return img


def _lab(rgb):
    return rgb_to_lab(np.array([[rgb]], np.uint8))[0, 0]


def _closest_de(ref: ReferenceFeatures, rgb) -> float:
    used = ref.palette[ref.weights > 0]
    return float(delta_e2000(used, np.repeat(_lab(rgb)[None], len(used), 0)).min())


@pytest.mark.parametrize("background", [(255, 255, 255), (160, 200, 230)])
def test_palette_recovers_big_regions_and_drops_background(background):
    ref = extract_reference(_drawing(background))
    for colour in (RED, BLUE, YELLOW, SKIN):
        assert _closest_de(ref, colour) < 5.0, f"no palette colour near {colour}: {ref.palette}"
    # neither the paper nor the ink is a palette colour of any weight
    assert _closest_de(ref, background) > 10.0
    dark = (ref.palette[:, 0] < 20) & (ref.weights > 0.02)
    assert not dark.any()
    # most area first: the red body is the biggest region
    assert delta_e2000(ref.palette[0], _lab(RED)) < 5.0


def test_shapes_sums_and_vector():
    ref = extract_reference(_drawing(), k=6)
    assert ref.palette.shape == (6, 3) and ref.palette.dtype == np.float32
    assert ref.weights.shape == (6,) and abs(ref.weights.sum() - 1) < 1e-5
    assert np.all(np.diff(ref.weights) <= 1e-6)
    assert ref.histogram.shape == (HIST_BINS ** 3,) and abs(ref.histogram.sum() - 1) < 1e-5
    v = ref.vector()
    assert v.shape == (VECTOR_DIM,) and v.dtype == np.float32 and np.isfinite(v).all()
    # a shorter palette still gives a vector of the same length
    assert extract_reference(_drawing(), k=3).vector().shape == (VECTOR_DIM,)


def test_json_round_trip():
    ref = extract_reference(_drawing())
    back = ReferenceFeatures.from_json(ref.to_json())
    assert np.allclose(back.palette, ref.palette, atol=1e-3)
    assert np.allclose(back.vector(), ref.vector(), atol=1e-3)


def test_deterministic_and_keeps_background_when_asked():
    img = _drawing()
    a, b = extract_reference(img), extract_reference(img)
    assert np.array_equal(a.palette, b.palette)
    scene = extract_reference(img, remove_background=False)
    assert _closest_de(scene, (255, 255, 255)) < 5.0


def test_blank_image_and_bad_input():
    ref = extract_reference(np.full((20, 30, 3), 255, np.uint8))
    assert abs(ref.weights.sum() - 1) < 1e-5
    with pytest.raises(ValueError, match="uint8"):
        extract_reference(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="sum to 1"):
        ReferenceFeatures(np.zeros((2, 3)), np.array([0.5, 0.2]), np.full(216, 1 / 216))


# --- the lightness table (the reference side of the colorizer's lightness prior) --------------------------------

HAIR = (205, 45, 35)  # a red hair colour; L* about 46


def _red_haired_figure() -> np.ndarray:
    """White paper, a light skin face and a big red hair mass, both with thick black outlines."""
    img = np.full((200, 160, 3), 255, np.uint8)
    cv2.ellipse(img, (80, 60), (55, 40), 0, 0, 360, HAIR, -1)
    cv2.ellipse(img, (80, 60), (55, 40), 0, 0, 360, (0, 0, 0), 4)
    cv2.circle(img, (80, 120), 35, SKIN, -1)
    cv2.circle(img, (80, 120), 35, (0, 0, 0), 4)
    return img


def _bin(L: float) -> int:
    return int(L * L_BINS / 100.0)


def test_l_table_holds_foreground_colours_by_lightness_only():
    ref = extract_reference(_red_haired_figure())
    t = ref.l_table
    assert t.shape == (L_BINS, 3) and t.dtype == np.float32
    assert abs(float(t[:, 2].sum()) - 1.0) < 1e-5
    hair, skin = _lab(HAIR), _lab(SKIN)
    # the hair's bin holds the hair's red, with a big share of the pixels
    hb = _bin(hair[0])
    assert np.hypot(t[hb, 0] - hair[1], t[hb, 1] - hair[2]) < 4.0, t[hb]
    assert t[hb, 2] > 0.3
    sb = _bin(skin[0])
    assert np.hypot(t[sb, 0] - skin[1], t[sb, 1] - skin[2]) < 4.0, t[sb]
    # the white paper and the black outlines are not in the table: nothing at L* > 95 or L* < 20
    assert t[_bin(99.0):, 2].sum() == 0.0
    assert t[: _bin(20.0), 2].sum() == 0.0


def test_l_table_json_round_trip_and_records_without_it():
    ref = extract_reference(_red_haired_figure())
    d = ref.to_json()
    back = ReferenceFeatures.from_json(json.loads(json.dumps(d)))
    assert back.l_table is not None and np.allclose(back.l_table, ref.l_table, atol=1e-3)
    old = {k: v for k, v in d.items() if k != "l_table"}  # a record stored before the table existed
    legacy = ReferenceFeatures.from_json(old)
    assert legacy.l_table is None and np.allclose(legacy.vector(), ref.vector(), atol=1e-3)
    assert "l_table" not in legacy.to_json()
    with pytest.raises(ValueError, match="l_table"):
        ReferenceFeatures(ref.palette, ref.weights, ref.histogram, np.zeros((L_BINS, 3), np.float32))
    with pytest.raises(ValueError, match="l_table"):
        ReferenceFeatures(ref.palette, ref.weights, ref.histogram, ref.l_table[:5])


def test_bank_entry_without_l_table_is_extracted_again_from_its_image(tmp_path):
    from manga_pipeline.bank import colour_reference
    from manga_pipeline.imageio import write_png
    from manga_pipeline.workspace import BankEntry

    img = _red_haired_figure()
    path = tmp_path / "pepper.png"
    write_png(path, img)
    fresh = extract_reference(img)
    old = {k: v for k, v in fresh.to_json().items() if k != "l_table"}
    entry = BankEntry("Pepper", {"references": [old]}, np.zeros((0, 4), np.float32), (("reference", path),))
    got = colour_reference(entry)
    assert got.l_table is not None and np.allclose(got.l_table, fresh.l_table, atol=1e-5)
    # a record with a table is used as stored; no image is needed
    stored = BankEntry("Pepper", {"references": [fresh.to_json()]}, np.zeros((0, 4), np.float32), ())
    assert np.allclose(colour_reference(stored).l_table, fresh.l_table, atol=1e-3)
    assert colour_reference(BankEntry("Nobody", {}, np.zeros((0, 4), np.float32), ())) is None
    # an old record whose image is gone is an error, never a silent "no prior"
    from manga_pipeline.imageio import ImageError

    lost = BankEntry("Pepper", {"references": [old]}, np.zeros((0, 4), np.float32),
                     (("reference", tmp_path / "missing.png"),))
    with pytest.raises(ImageError, match="Pepper"):
        colour_reference(lost)
