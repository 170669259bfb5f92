"""Synthetic manga chapters with exact ground truth, for tests, the demo and training.

``generate_chapter`` draws B/W manga pages (line art, screentones, speech balloons with lettering) together with
their colour editions, from a recurring cast of characters with fixed colour schemes. Every page comes with its
panels (polygons in reading order), characters (box + visible-pixel mask + name) and balloons (box + interior
mask). ``render_reference`` draws a character alone, as a user would register it; ``write_chapter`` saves a
chapter in the shared annotation format.
"""
from .characters import CharacterDesign, make_cast, render_reference
from .io import write_chapter
from .layouts import DEFAULT_LAYOUTS
from .render import SyntheticChapter, SyntheticPage, generate_chapter, generate_page
from .series import generate_series, write_series

__all__ = [
    "CharacterDesign",
    "SyntheticChapter",
    "SyntheticPage",
    "DEFAULT_LAYOUTS",
    "generate_chapter",
    "generate_page",
    "generate_series",
    "make_cast",
    "render_reference",
    "write_chapter",
    "write_series",
]
