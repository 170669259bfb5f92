import sqlite3

import numpy as np
import pytest

from manga_pipeline.fsutil import atomic_path
from manga_pipeline.records import CharacterInstance, ColorHint, IdentityOverride, PageDetections, Panel, TextRegion
from manga_pipeline.workspace import SCHEMA_VERSION, Workspace, WorkspaceError, cache_key


def test_create_open_and_schema(tmp_path):
    with pytest.raises(WorkspaceError, match="not a workspace"):
        Workspace.open(tmp_path / "ws")
    with Workspace.create(tmp_path / "ws") as ws:
        assert ws.schema_version == SCHEMA_VERSION
        assert ws._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(WorkspaceError, match="already"):
        Workspace.create(tmp_path / "ws")


def test_newer_schema_is_refused(tmp_path):
    Workspace.create(tmp_path / "ws").close()
    conn = sqlite3.connect(tmp_path / "ws" / "workspace.sqlite")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit(); conn.close()
    with pytest.raises(WorkspaceError, match="newer"):
        Workspace.open(tmp_path / "ws")


def test_pages_are_stored_by_content_and_originals_untouched(tmp_path):
    src = tmp_path / "p.png"
    src.write_bytes(b"fake image bytes" * 10)
    before = src.read_bytes()
    with Workspace.create(tmp_path / "ws") as ws:
        p, new = ws.add_page(src.read_bytes(), str(src), 10, 20, False)
        again, new2 = ws.add_page(src.read_bytes(), "other-name.png", 10, 20, False)
        assert new and not new2 and again.page_id == p.page_id
        assert p.source.read_bytes() == before and p.source != src
        assert ws.find_page("0").page_id == p.page_id and ws.find_page(p.page_id[:8]).page_id == p.page_id
    assert src.read_bytes() == before


def _det(pid):
    mask = np.zeros((10, 10), bool); mask[2:5, 3:9] = True
    return PageDetections(
        pid, 100, 80,
        (Panel.from_box((0, 0, 50, 80), 0, 0.9),),
        (CharacterInstance((5, 5, 15, 15), 0.8, "Nana", 0.7, 0, mask=mask),),
        (TextRegion((20, 20, 30, 40), "balloon", 0.6, mask=np.ones((20, 10), bool)),),
    )


def test_detections_round_trip_with_masks(tmp_path):
    with Workspace.create(tmp_path / "ws") as ws:
        p, _ = ws.add_page(b"x" * 100, "a.png", 100, 80, False)
        det = _det(p.page_id)
        ws.save_detections(det, "k1", "classical-v1")
        assert ws.cached_detections(p.page_id, "other-key") is None
        back = ws.cached_detections(p.page_id, "k1")
        assert back == det
        assert np.array_equal(back.characters[0].mask, det.characters[0].mask)
        assert back.panels[0].polygon.equals(det.panels[0].polygon)


def test_a_crash_inside_a_transaction_changes_nothing(tmp_path):
    with Workspace.create(tmp_path / "ws") as ws:
        p, _ = ws.add_page(b"x" * 100, "a.png", 100, 80, False)
        with pytest.raises(KeyboardInterrupt):
            with ws.transaction() as c:
                c.execute("DELETE FROM pages")
                raise KeyboardInterrupt  # the user pressed Ctrl-C halfway
        assert len(ws.pages()) == 1
    # a killed writer: a file being written never appears under its final name
    target = tmp_path / "ws" / "output" / "0000.png"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and not list(target.parent.glob("*.part*"))


def test_uncommitted_work_of_a_killed_process_is_not_seen(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    p, _ = ws.add_page(b"x" * 100, "a.png", 100, 80, False)
    ws._conn.execute("BEGIN IMMEDIATE")
    ws._conn.execute("DELETE FROM pages")
    # the process dies here: the connection goes away without COMMIT
    ws._conn.close()
    with Workspace.open(tmp_path / "ws") as again:
        assert [q.page_id for q in again.pages()] == [p.page_id]


def test_bank_overrides_and_results(tmp_path):
    with Workspace.create(tmp_path / "ws") as ws:
        p, _ = ws.add_page(b"x" * 100, "a.png", 100, 80, False)
        ws.add_character("Nana", {"palette": ["#ff0000"]}, np.ones((2, 4), np.float32), [("reference", b"img", "n.png")])
        with pytest.raises(WorkspaceError, match="already registered"):
            ws.add_character("Nana", {}, np.ones((1, 4), np.float32), [])
        (entry,) = ws.bank()
        assert entry.descriptors.shape == (2, 4) and entry.images[0][1].read_bytes() == b"img"
        fp = entry.fingerprint
        ws.add_character("Nana", {"palette": ["#00ff00"]}, np.ones((2, 4), np.float32), [], replace=True)
        assert ws.bank()[0].fingerprint != fp

        ws.add_override(IdentityOverride(p.page_id, (5, 5, 15, 15), "Nana"))
        ws.add_override(ColorHint(p.page_id, 3, 4, "#112233"))
        ws.add_override(("reference", p.page_id, 0, "Nana"))
        oid = ws.add_override(("lock", p.page_id, 0))
        ov = ws.overrides(p.page_id)
        assert ov.identities[0].name == "Nana" and ov.hints[0].rgb == (0x11, 0x22, 0x33)
        assert ov.panel_references == ((0, "Nana"),) and ov.locked_panels == {0}
        ws.remove_override(oid)
        assert ws.overrides(p.page_id).locked_panels == frozenset()

        chroma = np.random.default_rng(0).normal(0, 20, (8, 6, 2)).astype(np.float32)
        ws.save_panel_result(p.page_id, 0, "key0", chroma, "untrained")
        key, back, weights = ws.panel_result(p.page_id, 0)
        assert key == "key0" and weights == "untrained" and np.abs(back - chroma).max() < 0.05

        ws.remove_character("Nana")
        assert ws.bank() == []


def test_cache_key_is_stable_and_sensitive():
    assert cache_key("a", {"x": 1, "y": [1, 2]}) == cache_key("a", {"y": [1, 2], "x": 1})
    assert cache_key("a", 1) != cache_key("a", 2)
