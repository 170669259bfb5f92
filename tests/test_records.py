import numpy as np
import pytest
from shapely.geometry import Polygon

from manga_pipeline.records import (
    CharacterInstance, ColorHint, ColorizedPanel, IdentityOverride, Page, PageDetections, PageOutcome, Panel,
    RecordError, TextRegion, box_iou, check_box,
)

PID = "a" * 64


def test_page_requires_sha256_id_and_positive_size():
    Page(PID, "x.png", 10, 20, False)
    with pytest.raises(RecordError, match="sha256"):
        Page("abc", "x.png", 10, 20, False)
    with pytest.raises(RecordError, match="positive"):
        Page(PID, "x.png", 0, 20, False)


def test_boxes_are_checked_and_normalised():
    assert check_box([1.2, 2.7, 10, 20]) == (1, 3, 10, 20)
    with pytest.raises(RecordError, match="empty"):
        check_box((5, 5, 5, 9))
    with pytest.raises(RecordError, match="width"):
        check_box((0, 0, 11, 5), width=10)
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_panel_polygon_must_be_valid_and_box_covers_it():
    p = Panel(Polygon([(10, 10), (100, 20), (90, 200), (5, 190)]), order=0)
    assert p.box == (5, 10, 100, 200)
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    with pytest.raises(RecordError, match="valid"):
        Panel(bowtie, 0)
    with pytest.raises(RecordError, match="score"):
        Panel.from_box((0, 0, 5, 5), 0, score=1.5)


def test_character_mask_must_match_box_and_names_are_checked():
    CharacterInstance((0, 0, 4, 3), mask=np.ones((3, 4), bool), identity="Nana", confidence=0.9)
    with pytest.raises(RecordError, match="mask shape"):
        CharacterInstance((0, 0, 4, 3), mask=np.ones((4, 4), bool))
    with pytest.raises(RecordError, match="name"):
        CharacterInstance((0, 0, 4, 3), identity="a/b")
    with pytest.raises(RecordError, match="identity_source"):
        CharacterInstance((0, 0, 4, 3), identity_source="guess")


def test_page_detections_check_orders_and_bounds():
    panels = (Panel.from_box((0, 0, 50, 50), 1), Panel.from_box((50, 0, 100, 50), 0))
    det = PageDetections(PID, 100, 100, panels, (CharacterInstance((1, 1, 20, 20), panel=1),),
                         (TextRegion((60, 5, 90, 40)),))
    assert [p.order for p in det.panels_in_order()] == [0, 1]
    with pytest.raises(RecordError, match="without gaps"):
        PageDetections(PID, 100, 100, (Panel.from_box((0, 0, 50, 50), 2),))
    with pytest.raises(RecordError, match="past the page"):
        PageDetections(PID, 100, 100, characters=(CharacterInstance((1, 1, 120, 20)),))
    with pytest.raises(RecordError, match="refers to panel"):
        PageDetections(PID, 100, 100, panels, (CharacterInstance((1, 1, 20, 20), panel=5),))


def test_overrides_and_results_invariants():
    assert ColorHint(PID, 3, 4, "#FF8800").rgb == (255, 136, 0)
    with pytest.raises(RecordError, match="#RRGGBB"):
        ColorHint(PID, 3, 4, "orange")
    IdentityOverride(PID, (0, 0, 5, 5), None)
    ColorizedPanel(PID, -1, (0, 0, 5, 5), np.zeros((4, 4, 2), np.float32))
    with pytest.raises(RecordError, match="float32"):
        ColorizedPanel(PID, 0, (0, 0, 5, 5), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(RecordError, match="NaN"):
        ColorizedPanel(PID, 0, (0, 0, 5, 5), np.full((4, 4, 2), np.nan, np.float32))
    with pytest.raises(RecordError, match="reason"):
        PageOutcome(PID, "failed")


def test_page_overrides_accept_the_page_pass_reference():
    from manga_pipeline.records import PageOverrides

    assert PageOverrides(PID, panel_references=((-1, "scene"),)).panel_references == ((-1, "scene"),)
    with pytest.raises(RecordError, match=">= -1"):
        PageOverrides(PID, panel_references=((-2, "scene"),))
