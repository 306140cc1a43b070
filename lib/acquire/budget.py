"""Budgets: `10%` of the pool or `300` items."""
from fractions import Fraction

from lib.errors import UserError


def parse_budget(text, pool_items):
    """Number of items a budget string stands for; percentages round half up."""
    text = text.strip()
    try:
        if text.endswith("%"):
            percent = Fraction(text[:-1])
            items = int(percent * pool_items / 100 + Fraction(1, 2))
        else:
            items = int(text)
    except ValueError:
        raise UserError(f"--budget {text!r}: expected a count like 300 or a percentage like 10%") from None
    if items <= 0:
        raise UserError(f"--budget {text!r}: must select at least one item (pool of {pool_items})")
    return items
