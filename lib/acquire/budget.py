"""Budgets: `300` items, `10%` of the pool's items, or `2.5%px` of the pool's pixels."""
from fractions import Fraction

from lib.errors import UserError

FORMS = "a count like 300, a share of the pool like 10%, or a share of its pixels like 2.5%px"


def parse_budget(text, pool_items, pool_pixels, item_pixels):
    """Number of items a budget string stands for; shares round half up.

    `pool_items` is None for units that do not tile the pool into a fixed number of
    items (regions): their budgets are counts or pixels. A pixel budget is turned
    into items of `item_pixels` pixels each (the mean size of a candidate), so the
    labeled pixels match it exactly when items have one size.
    """
    text = text.strip()
    try:
        if text.endswith("%px"):
            pixels = Fraction(text[:-3]) * pool_pixels / 100
            items = int(pixels / Fraction(item_pixels) + Fraction(1, 2))
        elif text.endswith("%"):
            if pool_items is None:
                raise UserError(f"--budget {text!r}: regions have no item count to take a share of; "
                                f"give a count or a share of the pixels like {text}px")
            items = int(Fraction(text[:-1]) * pool_items / 100 + Fraction(1, 2))
        else:
            items = int(text)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--budget {text!r}: expected {FORMS}") from None
    if items <= 0:
        raise UserError(f"--budget {text!r}: must select at least one item")
    return items
