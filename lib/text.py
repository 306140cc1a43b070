"""Counts in messages that agree with their nouns: "1 labeled image has no mask file", "3 labeled images have"."""


def plural(count, singular, plural_form=None):
    """`count` and the form of a noun phrase that fits it: plural(1, "image") -> "1 image", plural(0, "image") ->
    "0 images". `plural_form` for phrases that do not just take an s: plural(n, "image has", "images have")."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"
