"""Reference features: a character drawn on white gives back its own colours, never the paper's."""
import cv2
import numpy as np
import pytest

from colorizer.metrics import delta_e2000
from colorizer.reference import HIST_BINS, VECTOR_DIM, ReferenceFeatures, extract_reference
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
