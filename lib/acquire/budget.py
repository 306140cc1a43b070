"""Budgets: `300` items, `10%` of the pool's items, or `2.5%px` of the pool's pixels."""
import argparse
from fractions import Fraction

from lib.errors import UserError

FORMS = "a count like 300, a share of the pool like 10%, or a share of its pixels like 2.5%px"


def _amount(text):
    """(count or share as a Fraction, unit: "" for a count, "%" or "%px"); ValueError when it is no budget."""
    for unit in ("%px", "%"):
        if text.endswith(unit):
            return Fraction(text[:-len(unit)]), unit  # exact: 1e5000% is a number, not infinity
    return Fraction(int(text)), ""


def budget_text(text):
    """An argparse type for --budget: the text as given (the index history records it), checked in form and range."""
    text = text.strip()
    try:
        amount, unit = _amount(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected {FORMS}, got {text!r}") from None
    if amount <= 0:
        raise argparse.ArgumentTypeError(f"must select at least one item, got {text!r}")
    if unit and amount > 100:
        raise argparse.ArgumentTypeError(f"a share of the pool is at most 100%, got {text!r}")
    return text


def parse_budget(text, pool_items, pool_pixels, item_pixels):
    """Number of items a budget (checked by budget_text) stands for; shares round half up.

    `pool_items` is None for units that do not tile the pool into a fixed number of
    items (regions): their budgets are counts or pixels. A pixel budget is turned
    into items of `item_pixels` pixels each (the mean size of a candidate), so the
    labeled pixels match it exactly when items have one size.
    """
    amount, unit = _amount(text)
    if unit == "%px":
        items = int(amount * pool_pixels / 100 / Fraction(item_pixels) + Fraction(1, 2))
    elif unit == "%":
        if pool_items is None:
            raise UserError(f"--budget {text!r}: regions have no item count to take a share of; "
                            f"give a count or a share of the pixels like {text}px")
        items = int(amount * pool_items / 100 + Fraction(1, 2))
    else:
        items = int(amount)
    if items <= 0:
        raise UserError(f"--budget {text!r}: rounds to no item of this pool; ask for more")
    return items
