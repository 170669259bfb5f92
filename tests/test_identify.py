"""Character bank and identification: chapter-level naming, unknowns, clusters, overrides, CLI, eval."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detectors.embedding import Embedder, EmbedderConfig, build_embedder, prepare_crop
from detectors.identify import Identifier, IdentifierConfig, average_linkage
from manga_pipeline.records import CharacterInstance, PageDetections, Panel
from manga_pipeline.synthetic import generate_chapter, write_chapter
from tests.clihelp import invoke

TINY = EmbedderConfig(size=32, widths=(4, 8, 8), dim=8)
PID = "ab" * 32


def tiny_embedder(calib=(30.0, 0.0, -24.0)) -> Embedder:
    """Random tiny network; confidence 0.5 at similarity 0.8, 0.8 at about 0.846, 0.95 at about 0.898."""
    net = build_embedder(TINY, seed=0)
    net.calib.copy_(torch.tensor(calib))
    return Embedder(net, "identifier.tiny-test", False)


def unit(*v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def page(chars, n_panels=2, page_id=PID) -> PageDetections:
    panels = tuple(Panel.from_box((0, 100 * k, 100, 100 * k + 100), k) for k in range(n_panels))
    return PageDetections(page_id, 100, 100 * n_panels, panels=panels, characters=tuple(chars))


def char(panel, x=0, **kw) -> CharacterInstance:
    return CharacterInstance((x, 100 * panel, x + 10, 100 * panel + 50), panel=panel, **kw)


BANK = [("Nana", unit(1, 0, 0, 0)[None]), ("Mei", unit(0, 1, 0, 0)[None])]


def names_of(det):
    return [c.identity for c in det.characters]


# --- the network ------------------------------------------------------------------------------------------------


def test_embeddings_are_unit_vectors_and_mirror_invariant():
    emb = tiny_embedder()
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (40, 23), dtype=np.uint8)
    out = emb.embed([crop, crop[:, ::-1].copy(), np.full((5, 60), 255, np.uint8)])
    assert out.shape == (3, TINY.dim) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.allclose(out[0], out[1], atol=1e-5)  # a character facing the other way is the same character
    x = prepare_crop(crop, 32)  # letterboxed: aspect kept, padding is paper (ink 0)
    assert x.shape == (32, 32) and x[:, :3].max() == 0.0 and x.max() > 0


# --- naming a chapter ------------------------------------------------------------------------------------------


def test_a_name_is_used_at_most_once_per_panel():
    ident = Identifier(BANK, IdentifierConfig(), tiny_embedder())
    det = page([char(0, 0), char(0, 20), char(1, 0)])
    emb = np.stack([unit(1, 0.05, 0, 0), unit(1, 0.1, 0, 0), unit(1, 0.05, 0, 0)])
    out = ident.assign([(det, emb)]).pages[0]
    # both characters of panel 0 look like Nana: the closer one gets the name, the other is not forced
    assert names_of(out) == ["Nana", None, "Nana"]
    assert out.characters[0].confidence > 0.8


def test_unknown_characters_stay_unknown_and_are_clustered_across_pages():
    ident = Identifier(BANK, IdentifierConfig(), tiny_embedder())
    stranger = unit(0, 0, 1, 0)
    det1 = page([char(0, 0), char(1, 0)], page_id="01" * 32)
    det2 = page([char(0, 0), char(0, 20), char(1, 0)], page_id="02" * 32)
    items = [(det1, np.stack([unit(0, 0.1, 1, 0), unit(0, 1, 0, 0)])),
             (det2, np.stack([stranger, unit(0.3, 0, 1, 0.1), unit(0, 0, 0.2, 1)]))]
    res = ident.assign(items)
    assert names_of(res.pages[0]) == [None, "Mei"]
    assert names_of(res.pages[1]) == [None, None, None]
    clusters = {c.cluster: set(c.members) for c in res.clusters}
    # the stranger of page 1 and the one of page 2 share a cluster; two characters of one panel never do
    first = clusters[1]
    assert ("01" * 32, det1.characters[0].box) in first
    assert len([m for m in first if m[0] == "02" * 32]) == 1
    assert ("02" * 32, det2.characters[2].box) not in first


def test_confident_names_propagate_to_look_alike_appearances():
    cfg = IdentifierConfig()
    ident = Identifier(BANK, cfg, tiny_embedder())
    far = unit(0.78, 0, 0.62, 0)  # an appearance unlike the reference (similarity 0.78) ...
    near = unit(0.9, 0, 0.43, 0)  # ... but like a confidently named appearance
    det = page([char(0, 0), char(1, 0)])
    without = Identifier(BANK, dataclasses.replace(cfg, rounds=0), tiny_embedder()).assign([(det, np.stack([near, far]))])
    assert names_of(without.pages[0]) == ["Nana", None]
    assert names_of(ident.assign([(det, np.stack([near, far]))]).pages[0]) == ["Nana", "Nana"]


def test_an_override_wins_and_takes_its_name_in_the_panel():
    from detectors.identify import apply_identity_overrides, resolve_override_conflicts
    from manga_pipeline.records import IdentityOverride

    ident = Identifier(BANK, IdentifierConfig(), tiny_embedder())
    det = page([char(0, 0), char(0, 20)])
    auto = ident.assign([(det, np.stack([unit(1, 0, 0, 0), unit(0, 0, 1, 0)]))]).pages[0]
    assert names_of(auto) == ["Nana", None]
    fixed = resolve_override_conflicts(apply_identity_overrides(auto, [IdentityOverride(PID, det.characters[1].box, "Nana")]))
    assert names_of(fixed) == [None, "Nana"]
    assert fixed.characters[1].identity_source == "override"


def test_average_linkage_respects_cannot_link_groups():
    X = np.stack([unit(1, 0), unit(1, 0.05), unit(1, 0.1), unit(0, 1)])
    labels = average_linkage(X, ["a", "a", "b", "c"], 0.3)
    assert labels[0] != labels[1]  # same panel
    assert labels[2] in (labels[0], labels[1]) and labels[3] not in labels[:3]


# --- the bank --------------------------------------------------------------------------------------------------


def test_bank_descriptors_are_recomputed_for_other_weights(tmp_path):
    from manga_pipeline.bank import build_character, identity_descriptors
    from manga_pipeline.synthetic import make_cast, render_reference
    from manga_pipeline.workspace import Workspace

    ref = tmp_path / "Nana.png"
    Image.fromarray(render_reference(make_cast(1, seed=1)[0], size=128)).save(ref)
    a = tiny_embedder()
    other = Embedder(build_embedder(TINY, seed=5), "identifier.other-test", False)
    built = build_character("Nana", [ref], embedder=a)
    assert built.features["identity"]["weights"] == "identifier.tiny-test"
    assert built.features["palette"] and len(built.features["references"][0]["histogram"]) == 216
    with Workspace.create(tmp_path / "ws") as ws:
        ws.add_character(built.name, built.features, built.descriptors, built.images)
        entry = ws.bank()[0]
    assert np.array_equal(identity_descriptors(entry, a), built.descriptors)
    fresh = build_character("Nana", [ref], embedder=other).descriptors
    assert np.allclose(identity_descriptors(entry, other), fresh, atol=1e-6)


# --- with the shipped weights on a synthetic chapter -----------------------------------------------------------


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("idchapter")
    write_chapter(generate_chapter(3, seed=7, size=(600, 850)), root)
    return root


def shipped():
    import weights as registry

    if registry.default_tag("identifier") is None:
        pytest.skip("no identifier weights shipped (train them with `manga-color train identifier`)")
    from detectors.identify import default_embedder

    return default_embedder()


def test_shipped_identifier_names_a_synthetic_chapter_and_leaves_strangers_unknown(chapter):
    """With the shipped weights, a chapter's characters are named from colour references, never wrongly forced."""
    from detectors.identify_eval import bank_from_spec, evaluate, load_annotations

    emb = shipped()
    gt = chapter / "ground_truth.json"
    pages, doc = load_annotations(gt)
    bank, used, _ = bank_from_spec("references", pages, doc, gt, emb)
    res = evaluate(pages, bank, used, emb)
    # measured 0.47 on this small 600x850 chapter (0.59-0.66 on full-size chapters, see the benchmark): the
    # calibrated threshold names only what it is sure of, and what it names is right
    assert res["accuracy"] >= 0.4
    assert res["wrong_name_rate"] <= 0.1
    assert res["false_assignment_rate"] <= 0.1  # each character left out of the bank in turn stays unknown


# --- the command line ------------------------------------------------------------------------------------------


def test_eval_identify_json_has_the_headline_keys(chapter):
    out = json.loads(invoke("eval", "identify", chapter / "ground_truth.json", "--bank", "references", "--json").stdout)
    for key in ("accuracy", "false_assignment_rate", "known_accuracy", "unknown_accuracy", "cluster_purity",
                "seconds_per_page", "bodies"):
        assert key in out
    assert out["bodies"] == sum(len(p["bodies"]) for p in json.loads((chapter / "ground_truth.json").read_text())["pages"])
    default = json.loads(invoke("eval", "identify", chapter / "ground_truth.json", "--json").stdout)
    assert default["bodies"] == out["bodies"] - len(out["bank_names"])  # one sample per character is not scored
    r = invoke("eval", "identify", chapter / "ground_truth.json", "--bank", "nowhere", ok=False)
    assert r.exit_code == 1 and "--bank" in r.output


def test_eval_identify_on_real_manga109(shared_data):
    out = json.loads(invoke("eval", "identify", shared_data / "annotations" / "manga109_dev.json", "--json").stdout)
    assert out["bodies"] == 22 and 0.0 <= out["accuracy"] <= 1.0 and "false_assignment_rate" in out


def test_character_show_rename_and_errors(tmp_path, chapter):
    ws = tmp_path / "ws"
    invoke("init", ws)
    ref = sorted((chapter / "references").glob("*.png"))[0]
    invoke("character", "add", "Nana", "--reference", ref, "-w", ws)
    shown = json.loads(invoke("character", "show", "Nana", "-w", ws, "--json").stdout)
    assert shown["palette"] and shown["descriptors"][0] >= 2 and shown["identity_current"]
    invoke("character", "rename", "Nana", "Nanami", "-w", ws)
    names = [c["name"] for c in json.loads(invoke("character", "list", "-w", ws, "--json").stdout)]
    assert names == ["Nanami"]
    assert json.loads(invoke("character", "show", "Nanami", "-w", ws, "--json").stdout)["images"][0]["kind"] == "reference"
    r = invoke("character", "show", "Nana", "-w", ws, ok=False)
    assert r.exit_code == 1 and "no character named" in r.output
    invoke("character", "add", "Mei", "--reference", ref, "-w", ws)
    r = invoke("character", "rename", "Mei", "Nanami", "-w", ws, ok=False)
    assert r.exit_code == 1 and "already registered" in r.output


# --- a workspace run with ground-truth character boxes: clusters and naming one ---------------------------------


@dataclass(frozen=True)
class _GTConfig:
    source: str = "ground truth"


class GroundTruthDetector:
    """Detections from a synthetic chapter's ground truth (the character detector is another stage)."""

    name = "gt-test"

    def __init__(self, chapter_dir: Path):
        import hashlib

        self.config = _GTConfig()
        doc = json.loads((chapter_dir / "ground_truth.json").read_text())
        self.pages = {}
        for rec in doc["pages"]:
            pid = hashlib.sha256((chapter_dir / rec["image"]).read_bytes()).hexdigest()
            self.pages[pid] = rec

    def detect(self, page_id, gray):
        rec = self.pages[page_id]
        h, w = gray.shape
        panels = tuple(Panel.from_box(b, k) for k, b in enumerate(rec["panels"]))
        chars = tuple(CharacterInstance(tuple(b["box"]), panel=b["panel"]) for b in rec["bodies"])
        return PageDetections(page_id, w, h, panels=panels, characters=chars)


class FlatColorizer:
    weights_id = "flat-test"
    trained = False

    def colorize_panel(self, gray, regions=(), scene=None, hints=(), anchor=False, anchor_l_weight=1.5):
        return np.zeros((*gray.shape, 2), np.float32)


def test_unknown_cluster_named_once_is_named_on_the_next_run(tmp_path, chapter):
    from manga_pipeline.pipeline import Pipeline
    from manga_pipeline.workspace import Workspace

    shipped()
    ws_dir = tmp_path / "ws"
    invoke("init", ws_dir)
    invoke("add", "-w", ws_dir, chapter / "pages")
    cast = json.loads((chapter / "ground_truth.json").read_text())["cast"]
    first = cast[0]["name"]
    invoke("character", "add", first, "--reference", chapter / cast[0]["reference"], "-w", ws_dir)
    pipe = Pipeline(colorizer=FlatColorizer(), detector=GroundTruthDetector(chapter))
    with Workspace.open(ws_dir) as ws:
        summary = pipe.run(ws)
        assert summary.count("done") == 3
        again = pipe.run(ws)
        assert again.cached == 3  # nothing is redone
    clusters = json.loads(invoke("character", "clusters", "-w", ws_dir, "--json").stdout)
    assert clusters and clusters[0]["size"] >= 2
    listing = json.loads(invoke("export", "-w", ws_dir, "--out", tmp_path / "x", "--json").stdout)
    assert not any(c["identity"] not in (None, first) for p in listing["pages"] for c in p["characters"])
    members = {(m["page_id"], tuple(m["box"])) for m in clusters[0]["members"]}
    invoke("character", "name-cluster", clusters[0]["cluster"], "Newcomer", "-w", ws_dir)
    with Workspace.open(ws_dir) as ws:
        pipe.run(ws)
    listing = json.loads(invoke("export", "-w", ws_dir, "--out", tmp_path / "x", "--json").stdout)
    named = {(p["page_id"], tuple(c["box"])): c["identity"] for p in listing["pages"] for c in p["characters"]}
    assert sum(named[m] == "Newcomer" for m in members) >= 0.8 * len(members)
    r = invoke("character", "name-cluster", "99", "X", "-w", ws_dir, ok=False)
    assert r.exit_code == 1 and "no unknown cluster 99" in r.output


def test_train_identifier_smoke(tmp_path):
    out = tmp_path / "identifier-smoke.pt"
    r = invoke("train", "identifier", "--data", tmp_path / "no-data", "--chapters", 2, "--steps", 2,
               "--val-chapters", 1, "--out", out, "--no-register", "--json")
    report = json.loads(r.stdout)
    assert out.is_file() and "synthetic_val" in report["metrics"]
    from detectors.embedding import Embedder as E

    assert E.load(str(out)).embed([np.full((20, 10), 128, np.uint8)]).shape == (1, EmbedderConfig().dim)
