"""The colorizer network, its inference wrapper, the metrics and a 2-step training run (tiny, seeded)."""
import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from colorizer.conditioning import build_inputs, collate, local_lightness, pad_to_multiple, table_lookup
from colorizer.infer import Colorizer
from colorizer.metrics import colourfulness, delta_e2000
from colorizer.model import ColorizerConfig, build_colorizer, build_discriminator, count_parameters
from colorizer.reference import L_BINS, ReferenceFeatures, extract_reference
from colorizer.train import TrainConfig, train_colorizer
from manga_pipeline.colorspace import gray_to_L

TINY = ColorizerConfig(size=64, widths=(8, 12, 16), mid_width=16, global_dim=8, ref_channels=8)

# Sharma, Wu & Dalal (2005), table 1: (Lab1, Lab2, ΔE00)
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_delta_e2000_matches_sharma_2005():
    lab1 = np.array([p[0] for p in SHARMA])
    lab2 = np.array([p[1] for p in SHARMA])
    want = np.array([p[2] for p in SHARMA])
    got = delta_e2000(lab1, lab2)
    assert np.allclose(got, want, atol=1e-4), np.c_[got, want][np.abs(got - want) > 1e-4]
    # symmetric, zero on the diagonal, works on images
    assert np.allclose(delta_e2000(lab2, lab1), want, atol=1e-4)
    img = np.random.default_rng(0).uniform([0, -80, -80], [100, 80, 80], (5, 7, 3))
    assert delta_e2000(img, img).shape == (5, 7) and np.allclose(delta_e2000(img, img), 0)


def test_colourfulness():
    gray = np.full((8, 8, 3), 128, np.uint8)
    assert colourfulness(gray) == 0.0
    vivid = np.zeros((8, 8, 3), np.uint8)
    vivid[:, :4] = (255, 0, 0)
    vivid[:, 4:] = (0, 0, 255)
    assert colourfulness(vivid) > 50


def _refs():
    red = ReferenceFeatures(np.array([[50, 70, 50]] + [[0, 0, 0]] * 5, np.float32),
                            np.array([1, 0, 0, 0, 0, 0], np.float32), np.full(216, 1 / 216, np.float32))
    blue = ReferenceFeatures(np.array([[50, 20, -70]] + [[0, 0, 0]] * 5, np.float32),
                             np.array([1, 0, 0, 0, 0, 0], np.float32), np.full(216, 1 / 216, np.float32))
    return red, blue


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_colorizer(TINY).eval()


def _panel():
    gray = np.full((64, 48), 200, np.uint8)
    cv2.circle(gray, (16, 20), 10, 120, -1)
    cv2.rectangle(gray, (28, 36), (44, 60), 90, -1)
    return gray


def test_tiny_model_shapes_and_finite():
    model = _tiny_model()
    assert count_parameters(model) < 200_000
    red, _ = _refs()
    m = np.zeros((64, 48), bool)
    m[10:30, 6:26] = True
    inp = build_inputs(_panel(), region_masks=[m], region_refs=[red], scene=red, hints=[(5, 5, 40.0, 10.0)])
    with torch.no_grad():
        out = model(*collate([inp]))
    assert out.shape == (1, 2, 64, 48) and torch.isfinite(out).all()
    d = build_discriminator(TINY)
    assert d(collate([inp])[0], out).shape[:2] == (1, 1)


def test_default_model_is_small():
    model = build_colorizer(ColorizerConfig())
    n = count_parameters(model)
    assert 0.5e6 < n < 5e6  # fp16 file well under 10 MB


def test_per_character_reference_acts_inside_its_region():
    model = _tiny_model()
    red, blue = _refs()
    gray = _panel()
    m1 = np.zeros(gray.shape, bool)
    m1[8:34, 4:30] = True
    m2 = np.zeros(gray.shape, bool)
    m2[36:62, 26:46] = True
    with torch.no_grad():
        a = model(*collate([build_inputs(gray, region_masks=[m1, m2], region_refs=[red, red])]))[0]
        b = model(*collate([build_inputs(gray, region_masks=[m1, m2], region_refs=[blue, red])]))[0]
    diff = (a - b).abs().sum(0).numpy()
    inside, outside = diff[m1].mean(), diff[~m1 & ~m2].mean()
    assert inside > 3 * outside, (inside, outside)
    assert diff[m2].mean() < inside  # the other character keeps its own colours


def test_hint_changes_output_near_its_point():
    model = _tiny_model()
    gray = _panel()
    with torch.no_grad():
        a = model(*collate([build_inputs(gray)]))[0]
        b = model(*collate([build_inputs(gray, hints=[(12, 50, 60.0, -40.0)])]))[0]
    diff = (a - b).abs().sum(0).numpy()
    near = diff[46:55, 8:17].mean()
    far = diff[:20, 28:].mean()
    assert near > 3 * far, (near, far)


def test_colorize_panel_working_resolution_regions_and_hints():
    col = Colorizer(_tiny_model(), TINY, trained=False, weights_id="untrained")
    gray = cv2.resize(_panel(), (96, 128), interpolation=cv2.INTER_NEAREST)  # crop 128 x 96 -> work 64 x 48
    red, blue = _refs()
    out = col.colorize_panel(gray)
    assert out.shape == (64, 48, 2) and out.dtype == np.float32 and np.isfinite(out).all()
    m = np.zeros(gray.shape, bool)
    m[16:68, 8:60] = True
    with_ref = col.colorize_panel(gray, regions=[(m, red)], scene=blue)
    assert with_ref.shape == out.shape and not np.allclose(with_ref, out)
    # a hint wins around its point: the output there is the hint's colour
    hinted = col.colorize_panel(gray, hints=[(20, 100, (30, 160, 40))])
    _, a, b = cv2.cvtColor(np.array([[[30, 160, 40]]], np.float32) / 255, cv2.COLOR_RGB2Lab)[0, 0]
    x, y = int(20 * 48 / 96), int(100 * 64 / 128)
    assert np.abs(hinted[y, x] - [a, b]).max() < 3.0
    assert np.abs(hinted[5, 40] - out[5, 40]).max() < np.abs(hinted[y, x] - out[y, x]).max()
    with pytest.raises(ValueError, match="bool"):
        col.colorize_panel(gray, regions=[(np.zeros((3, 3), bool), red)])


def test_load_without_shipped_weights_is_untrained(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"weights": {}, "defaults": {}}))
    col = Colorizer.load(manifest=manifest)
    assert col.trained is False and col.weights_id == "untrained"
    a = col.colorize_panel(_panel())
    b = Colorizer.load(manifest=manifest).colorize_panel(_panel())
    assert np.array_equal(a, b)  # seeded


def test_train_two_steps_registers_and_loads(tmp_path):
    manifest = tmp_path / "manifest.json"
    cfg = TrainConfig(tag="tiny-test", steps=2, batch=2, size=64, crop=32, data=("toy",), toy_samples=4,
                      widths=(8, 8, 8), mid_width=8, global_dim=8, gan_weight=0.1, out_dir=tmp_path,
                      manifest=manifest)
    spec = train_colorizer(cfg)
    assert spec.name_tag == "colorizer.tiny-test"
    assert (tmp_path / "colorizer-tiny-test.pt").exists()
    assert "--tag tiny-test --steps 2 --seed 0" in spec.command
    assert spec.metrics["train_steps"] == 2 and "de2000_gray" in spec.metrics["val_toy"]
    raw = json.loads(manifest.read_text())
    assert raw["defaults"]["colorizer"] == "colorizer.tiny-test"
    col = Colorizer.load("tiny-test", manifest=manifest)
    assert col.trained and col.weights_id == spec.short
    out = col.colorize_panel(_panel())
    assert out.shape == (64, 48, 2) and np.isfinite(out).all()
    assert Colorizer.load(manifest=manifest).weights_id == spec.short


def test_reference_from_drawing_feeds_the_net():
    img = np.full((80, 60, 3), 255, np.uint8)
    cv2.circle(img, (30, 40), 20, (200, 40, 40), -1)
    ref = extract_reference(img)
    col = Colorizer(_tiny_model(), TINY, trained=False, weights_id="untrained")
    m = np.ones((64, 48), bool)
    out = col.colorize_panel(_panel(), regions=[(m, ref)])
    assert np.isfinite(out).all()


def test_palette_anchoring_gives_a_region_exactly_its_palette_colours():
    from colorizer.infer import anchor_to_palette
    from colorizer.reference import extract_reference

    ref_img = np.zeros((64, 64, 3), np.uint8)
    ref_img[:32] = (230, 190, 160)  # skin, light
    ref_img[32:] = (40, 70, 160)    # a dark blue coat
    ref = extract_reference(ref_img)
    pal = ref.palette[ref.weights > 0]
    rng = np.random.default_rng(0)
    ab = rng.normal(0, 20, (40, 40, 2)).astype(np.float32)
    ab[..., :] += np.array([8.0, 15.0], np.float32)
    L = np.full((40, 40), 100.0, np.float32)  # white paper
    L[:, 20:] = 35.0                          # a dark tone
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    ab[5, 5] = (1.0, 1.0)  # left uncoloured by the network: stays uncoloured
    out = anchor_to_palette(ab, L, [mask], [ref])
    inside = mask & (np.hypot(ab[..., 0], ab[..., 1]) > 3.0)  # what the network coloured
    # every coloured pixel of the region now carries one of the palette's a*b* exactly
    dist = np.hypot(out[inside][:, None, 0] - pal[None, :, 1], out[inside][:, None, 1] - pal[None, :, 2]).min(1)
    assert dist.max() < 1e-4
    # paper takes the light palette colour, the dark tone the dark one
    light, dark = pal[pal[:, 0].argmax()], pal[pal[:, 0].argmin()]
    ab[10, 10], ab[10, 30] = (8.0, 15.0), (10.0, -10.0)
    out = anchor_to_palette(ab, L, [mask], [ref])
    assert np.allclose(out[10, 10], light[1:]) and np.allclose(out[10, 30], dark[1:])
    assert np.array_equal(out[~inside], ab[~inside]) and not inside[5, 5]


# --- the lightness prior ----------------------------------------------------------------------------------------


def _table(rows: dict) -> np.ndarray:
    """A lightness table from {bin: (a*, b*, count)}; other bins empty."""
    t = np.zeros((L_BINS, 3), np.float32)
    for i, (a, b, n) in rows.items():
        t[i] = (a, b, n)
    t[:, 2] /= t[:, 2].sum()
    return t


def _gray_of_L(L: float) -> int:
    """The uint8 gray whose L* is closest to ``L``."""
    return int(np.abs(gray_to_L(np.arange(256, dtype=np.uint8)[None])[0] - L).argmin())


def test_prior_channels_match_the_table_inside_and_are_zero_outside():
    red, blue = _refs()
    # bins of 5 L*: 40-45 red-orange, 70-75 yellow, nothing between or beyond
    table = _table({8: (60.0, 40.0, 3.0), 14: (0.0, 70.0, 1.0)})
    red = dataclasses.replace(red, l_table=table)
    gray = np.full((64, 48), 255, np.uint8)
    levels = [_gray_of_L(42.5), _gray_of_L(57.5), _gray_of_L(90.0)]
    for k, g in enumerate(levels):
        gray[:, 16 * k:16 * (k + 1)] = g
    m = np.zeros(gray.shape, bool)
    m[4:60, :] = True  # the figure with a table
    m2 = np.zeros(gray.shape, bool)
    m2[60:, :] = True  # another figure, reference without table
    inp = build_inputs(gray, region_masks=[m, m2], region_refs=[red, blue])
    assert inp.prior.shape == (3, 64, 48) and inp.prior.dtype == np.float32
    assert not inp.prior[:, ~m].any()  # the scene (no reference) and the table-less figure get no prior
    Lg = gray_to_L(gray)
    for k in range(3):  # centre of each band, away from the blurred band edges
        y, x = 30, 16 * k + 8
        a, b, conf = inp.prior[:, y, x]
        if k == 0:  # at a populated bin's centre: its colour, full confidence (the biggest bin)
            assert abs(Lg[y, x] - 42.5) < 0.5
            assert abs(a * 100 - 60) < 2 and abs(b * 100 - 40) < 2 and conf > 0.95
        elif k == 1:  # halfway between the populated bins, over empty bins: their mean, no confidence
            assert abs(a * 100 - 30) < 3 and abs(b * 100 - 55) < 3 and conf < 0.05
        else:  # brighter than anything in the reference: the nearest populated bin, no confidence
            assert abs(a * 100 - 0) < 1 and abs(b * 100 - 70) < 1 and conf == 0
    # the same numbers as the table lookup itself
    want = table_lookup(table, local_lightness(gray)[m])
    assert np.allclose(inp.prior[:2][:, m].T * 100, want[:, :2], atol=1e-3)
    assert np.allclose(inp.prior[2][m], want[:, 2], atol=1e-5)
    # padding keeps the prior aligned with the pixels, zero in the padding
    padded = pad_to_multiple(dataclasses.replace(inp, L=inp.L[:, :62, :45], hints=inp.hints[:, :62, :45],
                                                 region_ids=inp.region_ids[:62, :45], prior=inp.prior[:, :62, :45]))
    assert padded.prior.shape == (3, 64, 48) and not padded.prior[:, 62:].any()
    assert collate([padded, padded])[5].shape == (2, 3, 64, 48)


PRIOR_TINY = dataclasses.replace(TINY, prior_channels=True)


def test_model_with_prior_channels_reads_the_prior_and_trains_one_step():
    torch.manual_seed(0)
    model = build_colorizer(PRIOR_TINY)
    red, _ = _refs()
    red = dataclasses.replace(red, l_table=_table({8: (60.0, 40.0, 1.0), 16: (-20.0, 30.0, 1.0)}))
    m = np.zeros((64, 48), bool)
    m[10:50, 6:40] = True
    batch = collate([build_inputs(_panel(), region_masks=[m], region_refs=[red]),
                     build_inputs(_panel()[:, ::-1].copy(), region_masks=[m], region_refs=[None])])
    assert batch[5][0].abs().sum() > 0 and batch[5][1].abs().sum() == 0
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    out = model(*batch)
    assert out.shape == (2, 2, 64, 48)
    target = torch.zeros_like(out)
    target[:, 0] = 50.0
    loss = (out - target).abs().mean()
    opt.zero_grad()
    loss.backward()
    assert model.low1[0][0].weight.grad[:, -3:].abs().sum() > 0  # the first conv's prior channels learn
    opt.step()
    with torch.no_grad():
        after = model(*batch)
        assert after.shape == out.shape and (after - target).abs().mean() < loss
        # the prior changes the output inside the region; a v1-style model ignores it
        no_prior = model(*batch[:5], torch.zeros_like(batch[5]))
        assert (after[0] - no_prior[0]).abs().sum(0)[torch.from_numpy(m)].mean() > 0.1
        v1 = _tiny_model()
        assert torch.equal(v1(*batch), v1(*batch[:5], torch.zeros_like(batch[5])))
    with pytest.raises(ValueError, match="prior"):
        model(*batch[:5])


def test_prior_transfer_is_the_table_lookup_and_refuses_references_without_a_table():
    col = Colorizer(_tiny_model(), TINY, trained=False, weights_id="untrained")
    red, _ = _refs()
    red = dataclasses.replace(red, l_table=_table({8: (60.0, 40.0, 1.0)}))
    m = np.zeros((64, 48), bool)
    m[10:50, 6:40] = True
    out = col.colorize_panel(_panel(), regions=[(m, red)], transfer="prior")
    assert out.shape == (64, 48, 2)
    assert np.allclose(out[m], (60.0, 40.0), atol=1e-3) and not out[~m].any()
    with pytest.raises(ValueError, match="lightness table"):
        col.colorize_panel(_panel(), regions=[(m, _refs()[1])], transfer="prior")
    with pytest.raises(ValueError, match="transfer"):
        col.colorize_panel(_panel(), transfer="welsh")


def test_train_with_prior_registers_a_prior_model(tmp_path):
    manifest = tmp_path / "manifest.json"
    cfg = TrainConfig(tag="tiny-prior", steps=1, batch=2, size=64, crop=32, data=("toy",), toy_samples=4,
                      widths=(8, 8, 8), mid_width=8, global_dim=8, prior=True, out_dir=tmp_path, manifest=manifest,
                      make_default=False)
    spec = train_colorizer(cfg)
    assert "--prior" in spec.command and spec.config["model"]["prior_channels"] is True
    assert "defaults" not in json.loads(manifest.read_text()) or not json.loads(manifest.read_text())["defaults"]
    col = Colorizer.load("tiny-prior", manifest=manifest)
    assert col.cfg.prior_channels
    img = np.full((80, 60, 3), 255, np.uint8)
    cv2.circle(img, (30, 40), 20, (200, 40, 40), -1)
    out = col.colorize_panel(_panel(), regions=[(np.ones((64, 48), bool), extract_reference(img))])
    assert out.shape == (64, 48, 2) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="held out"):
        TrainConfig(data=("characters",), character_episodes=("episode-05",))
