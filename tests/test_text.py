"""Counts and nouns that agree in messages (lib/text.py)."""
import pytest

from lib.text import plural


@pytest.mark.parametrize("count, expected", [(0, "0 images"), (1, "1 image"), (2, "2 images")])
def test_plural_adds_an_s_unless_there_is_one(count, expected):
    assert plural(count, "image") == expected


@pytest.mark.parametrize("count, expected", [(1, "1 labeled image has"), (3, "3 labeled images have")])
def test_plural_takes_an_irregular_form(count, expected):
    assert plural(count, "labeled image has", "labeled images have") == expected
