"""Character identification: a trained embedding, matched against the character bank with chapter-level reasoning.

Every character crop is embedded by the identity network (``detectors.embedding``). A bank name is described by
the embeddings of a few *views* of its images: a colour reference is cut to its figure (background removed),
"printed" three ways (dark colours black, light ones paper, the middle screentone), and seen whole and as its
upper part (busts and close-ups are common on pages); a B/W sample is seen whole and as its upper part.

Naming a chapter (``Identifier.assign``):
1. each character's similarity to a name is the best cosine similarity to that name's views; its confidence is
   a calibrated probability (fitted after training on held-out synthetic chapters) from the best similarity and
   its lead over the runner-up;
2. inside a panel a name is used at most once: the most confident (character, name) pair is taken first, the
   others are re-scored among the names still free;
3. confident assignments propagate: the page crops named with high confidence become extra views of their
   name, so appearances that look more like another appearance than like the reference get named too;
4. below the threshold (or the margin) a character stays unknown, never forced onto a name; unknowns of the
   whole chapter are clustered (average linkage, never two characters of one panel together), so that a user
   names a cluster once.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from manga_pipeline.records import Box, CharacterInstance, PageDetections

from .embedding import Embedder, print_tones

VERSION = "embed-chapter-v1"
TOP_PARTS = (0.5, 0.25)  # upper parts of a figure used as extra views: bust and head framings
# (black below L*, paper above L*) of the printed views of a colour reference: a title may print a colour black,
# tone or white. On held-out synthetic chapters three printed views matched B/W appearances better than plain
# gray + one printed view (closed-set top-1 0.901 vs 0.886).
PRINT_TONES = ((30.0, 80.0), (24.0, 74.0), (36.0, 86.0))


@functools.lru_cache(maxsize=4)
def default_embedder(tag: str | None = None) -> Embedder:
    """The shipped identity network (or an untrained one when none is shipped), loaded once per process."""
    return Embedder.load(tag)


# --- views of bank images -------------------------------------------------------------------------------------


def foreground_box(rgb: np.ndarray) -> Box:
    """Bounding box of the figure of a reference: what is not border-connected near-white or uniform backdrop."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    backdrop = np.median(border, axis=0)
    near = (np.linalg.norm(lab - backdrop, axis=2) < 8.0) | (lab[..., 0] > 93.0)
    _, labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, edge[edge > 0]) & near
    ys, xs = np.nonzero(~background)
    h, w = rgb.shape[:2]
    if len(ys) < 16:
        return (0, 0, w, h)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _with_top(gray: np.ndarray) -> list[np.ndarray]:
    h = gray.shape[0]
    views = [gray]
    if h >= 16:
        views += [gray[: max(8, int(round(h * t)))] for t in TOP_PARTS]
    return views


def reference_views(rgb: np.ndarray) -> list[np.ndarray]:
    """uint8 (h, w) B/W views of a colour reference uint8 (H, W, 3): the figure only (background removed),
    printed with three tone mappings (a title may print a colour black, tone or white), whole and top parts."""
    if rgb.ndim != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"a colour reference must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    x0, y0, x1, y1 = foreground_box(rgb)
    fig = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    views = []
    for black_L, white_L in PRINT_TONES:
        views += _with_top(print_tones(fig, black_L=black_L, white_L=white_L))
    return views


def sample_views(gray: np.ndarray) -> list[np.ndarray]:
    """uint8 (h, w) views of a B/W sample crop: whole and top."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"a B/W sample must be uint8 (h, w), got {gray.dtype} {gray.shape}")
    return _with_top(gray)


def describe_reference(rgb: np.ndarray, embedder: Embedder | None = None) -> np.ndarray:
    """float32 (n_views, D) identity descriptors of a colour reference."""
    return (embedder or default_embedder()).embed(reference_views(rgb))


def describe_sample(gray: np.ndarray, embedder: Embedder | None = None) -> np.ndarray:
    """float32 (n_views, D) identity descriptors of a B/W sample crop of the character."""
    return (embedder or default_embedder()).embed(sample_views(gray))


def character_crops(gray_page: np.ndarray, det: PageDetections) -> list[np.ndarray]:
    """uint8 crops of every character of ``det`` (page pixels, boxes half-open)."""
    return [np.ascontiguousarray(gray_page[c.box[1]:c.box[3], c.box[0]:c.box[2]]) for c in det.characters]


# --- naming ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentifierConfig:
    threshold: float = 0.80       # minimum calibrated confidence to name a character
    margin: float = 0.03          # minimum cosine lead of the chosen name over the runner-up still free
    propagate: float = 0.95       # confidence at which a named appearance becomes a view of its name
    rounds: int = 2               # propagation rounds
    cluster_distance: float = 0.45  # average-linkage cosine distance below which unknowns share a cluster


@dataclass(frozen=True)
class UnknownCluster:
    """Unknown characters that look alike across the chapter: ``members`` are (page_id, box) pairs."""

    cluster: int
    members: tuple[tuple[str, Box], ...]

    def to_json(self) -> dict:
        return {"cluster": self.cluster, "members": [{"page_id": p, "box": list(b)} for p, b in self.members]}

    @classmethod
    def from_json(cls, d: dict) -> "UnknownCluster":
        return cls(int(d["cluster"]), tuple((m["page_id"], tuple(m["box"])) for m in d["members"]))


@dataclass(frozen=True)
class ChapterIdentities:
    """The pages with identities set, and the clusters of the characters left unknown."""

    pages: tuple[PageDetections, ...]
    clusters: tuple[UnknownCluster, ...] = ()


class Identifier:
    """Names characters against a bank of (name, descriptors float32 (n, D)) entries.

    ``embedder`` must be the network that made the descriptors (see ``manga_pipeline.bank``).
    """

    name = VERSION

    def __init__(self, bank: Sequence[tuple[str, np.ndarray]], config: IdentifierConfig = IdentifierConfig(),
                 embedder: Embedder | None = None):
        self.config = config
        self.embedder = embedder or default_embedder()
        self.names = [name for name, desc in bank if len(desc)]
        self._desc = [np.asarray(desc, np.float32) for _, desc in bank if len(desc)]

    # --- scoring --------------------------------------------------------------------------------------------

    def embed_characters(self, gray_page: np.ndarray, det: PageDetections) -> np.ndarray:
        """float32 (len(det.characters), D)."""
        return self.embedder.embed(character_crops(gray_page, det))

    def similarities(self, emb: np.ndarray) -> np.ndarray:
        """float32 (n, len(names)): best cosine similarity of each embedding to each name's views."""
        if not self.names or not len(emb):
            return np.zeros((len(emb), len(self.names)), np.float32)
        return np.stack([(emb @ d.T).max(1) for d in self._desc], 1).astype(np.float32)

    # --- a chapter ------------------------------------------------------------------------------------------

    def assign(self, items: Sequence[tuple[PageDetections, np.ndarray]]) -> ChapterIdentities:
        """Name the characters of a chapter: ``items`` = (detections, their embeddings (n_chars, D)) per page.

        Characters whose ``identity_source`` is "override" keep their identity and reserve it in their panel.
        """
        cfg = self.config
        refs, embs, groups = [], [], []  # auto characters: (page, char), embedding, panel group
        reserved: dict[tuple, set[int]] = {}
        for p, (det, emb) in enumerate(items):
            if len(emb) != len(det.characters):
                raise ValueError(f"page {det.page_id[:12]}: {len(emb)} embeddings for {len(det.characters)} characters")
            for i, c in enumerate(det.characters):
                group = (p, c.panel) if c.panel is not None else (p, "char", i)
                if c.identity_source == "override":
                    if c.identity in self.names:
                        reserved.setdefault(group, set()).add(self.names.index(c.identity))
                    continue
                refs.append((p, i))
                embs.append(emb[i])
                groups.append(group)
        n, m = len(refs), len(self.names)
        X = np.asarray(embs, np.float32) if n else np.zeros((0, self.embedder.dim), np.float32)
        names = np.full(n, -1)
        conf = np.zeros(n, np.float32)
        if n and m:
            base = self.similarities(X)
            sims = base
            for round_ in range(cfg.rounds + 1):
                names, conf = self._assign_panels(sims, groups, reserved)
                if round_ == cfg.rounds:
                    break
                sims = self._propagated(base, X, names, conf)
        clusters = self._cluster([k for k in range(n) if names[k] < 0], X, groups, refs, items)
        pages = []
        per_page: dict[int, dict[int, tuple[int, float]]] = {}
        for k, (p, i) in enumerate(refs):
            per_page.setdefault(p, {})[i] = (int(names[k]), float(conf[k]))
        for p, (det, _) in enumerate(items):
            chars = []
            for i, c in enumerate(det.characters):
                if i not in per_page.get(p, {}):
                    chars.append(c)
                    continue
                j, cf = per_page[p][i]
                chars.append(dataclasses.replace(
                    c, identity=self.names[j] if j >= 0 else None, confidence=float(np.clip(cf, 0, 1)) if j >= 0 else 0.0,
                    identity_source="auto"))
            pages.append(det.with_characters(chars))
        return ChapterIdentities(tuple(pages), clusters)

    def _assign_panels(self, sims: np.ndarray, groups, reserved) -> tuple[np.ndarray, np.ndarray]:
        """Greedy per panel: the most confident (character, free name) pair first; margins against free names."""
        cfg = self.config
        n, m = sims.shape
        names = np.full(n, -1)
        conf = np.zeros(n, np.float32)
        by_group: dict = {}
        for k, g in enumerate(groups):
            by_group.setdefault(g, []).append(k)
        for g, members in by_group.items():
            taken = set(reserved.get(g, ()))
            left = list(members)
            while left:
                free = [j for j in range(m) if j not in taken]
                if not free:
                    break
                s = sims[np.ix_(left, free)]
                order = np.argsort(-s, axis=1)
                best = s[np.arange(len(left)), order[:, 0]]
                second = s[np.arange(len(left)), order[:, 1]] if len(free) > 1 else np.zeros(len(left), np.float32)
                c = self.embedder.confidence(best, second)
                ok = (c >= cfg.threshold) & (best - second >= cfg.margin)
                if not ok.any():
                    break
                pick = int(np.argmax(np.where(ok, c, -1.0)))
                k = left.pop(pick)
                j = free[int(order[pick, 0])]
                names[k], conf[k] = j, c[pick]
                taken.add(j)
        return names, conf

    def _propagated(self, base: np.ndarray, X: np.ndarray, names: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Similarities where confidently named appearances count as extra views of their name (never of
        themselves)."""
        sims = base.copy()
        seeds = np.nonzero((names >= 0) & (conf >= self.config.propagate))[0]
        if not len(seeds):
            return sims
        G = X @ X[seeds].T  # (n, n_seeds)
        G[seeds, np.arange(len(seeds))] = -1.0
        for j in np.unique(names[seeds]):
            cols = names[seeds] == j
            sims[:, j] = np.maximum(sims[:, j], G[:, cols].max(1))
        return sims

    def _cluster(self, idx: list[int], X: np.ndarray, groups, refs, items) -> tuple[UnknownCluster, ...]:
        """Average-linkage clustering of the unknowns; two characters of one panel never share a cluster."""
        if not idx:
            return ()
        labels = average_linkage(X[idx], [groups[k] for k in idx], self.config.cluster_distance)
        out: dict[int, list] = {}
        first: dict[int, int] = {}
        for k, lab in zip(idx, labels):
            p, i = refs[k]
            det = items[p][0]
            out.setdefault(int(lab), []).append((det.page_id, det.characters[i].box))
            first.setdefault(int(lab), k)
        ordered = sorted(out, key=lambda lab: (-len(out[lab]), first[lab]))  # biggest first, then reading order
        return tuple(UnknownCluster(c + 1, tuple(out[lab])) for c, lab in enumerate(ordered))

    # --- one page (a chapter of one page) ------------------------------------------------------------------

    def identify(self, gray_page: np.ndarray, det: PageDetections) -> PageDetections:
        """Set identity/confidence of every automatically named character of ``det``; overrides are kept."""
        return self.assign([(det, self.embed_characters(gray_page, det))]).pages[0]


def average_linkage(X: np.ndarray, groups: Sequence, max_distance: float) -> np.ndarray:
    """Cluster labels (int (n,)) of unit vectors ``X`` (n, D): merge the closest clusters (mean cosine distance)
    while it is below ``max_distance``; clusters holding members of one group (panel) are never merged."""
    n = len(X)
    if n == 1:
        return np.zeros(1, np.int64)
    D = 1.0 - X @ X.T
    size = np.ones(n)
    alive = np.ones(n, bool)
    label = np.arange(n)
    gsets = [{g} for g in groups]
    gid = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    g = np.array([gid[x] for x in groups])
    D[g[:, None] == g[None, :]] = np.inf  # also the diagonal
    while True:
        flat = int(np.argmin(D))
        a, b = divmod(flat, n)
        if not np.isfinite(D[a, b]) or D[a, b] > max_distance:
            break
        # merge b into a (Lance-Williams update for average linkage)
        new = (size[a] * D[a] + size[b] * D[b]) / (size[a] + size[b])
        size[a] += size[b]
        gsets[a] |= gsets[b]
        alive[b] = False
        label[label == b] = a
        new[~alive] = np.inf
        for c in np.nonzero(alive)[0]:
            if c != a and gsets[a] & gsets[c]:
                new[c] = np.inf
        new[a] = np.inf
        D[a], D[:, a] = new, new
        D[b], D[:, b] = np.inf, np.inf
    _, out = np.unique(label, return_inverse=True)
    return out.astype(np.int64)


def apply_identity_overrides(det: PageDetections, overrides) -> PageDetections:
    """A user's identity corrections win: each override names the detected character it overlaps most
    (IoU >= 0.3); an override that matches no detection adds that box as a character (the user saw one there)."""
    from manga_pipeline.records import box_iou

    chars = list(det.characters)
    for ov in overrides:
        ious = [box_iou(ov.box, c.box) for c in chars]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= 0.3:
            chars[best] = dataclasses.replace(chars[best], identity=ov.name, confidence=1.0, identity_source="override")
        else:
            x0, y0, x1, y1 = ov.box
            box = (max(0, x0), max(0, y0), min(det.width, x1), min(det.height, y1))
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            from shapely.geometry import Point

            panel = next((p.order for p in det.panels if p.polygon.contains(Point(cx, cy))), None)
            chars.append(CharacterInstance(box=box, score=1.0, identity=ov.name, confidence=1.0, panel=panel,
                                           identity_source="override"))
    return det.with_characters(chars)


def resolve_override_conflicts(det: PageDetections) -> PageDetections:
    """After overrides: an automatic name that a user's override uses in the same panel becomes unknown."""
    used = {(c.panel, c.identity) for c in det.characters
            if c.identity_source == "override" and c.identity is not None and c.panel is not None}
    return det.with_characters(
        dataclasses.replace(c, identity=None, confidence=0.0)
        if c.identity_source == "auto" and (c.panel, c.identity) in used and c.identity is not None else c
        for c in det.characters
    )
