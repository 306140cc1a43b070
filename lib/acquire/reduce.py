"""Reductions from a [B, H, W] pixel-score map to one score per image: [B].

Later units (patches, regions) reduce over their own windows with the same names.
"""
REDUCTIONS = {
    "mean": lambda scores: scores.flatten(1).mean(dim=1),
    "sum": lambda scores: scores.flatten(1).sum(dim=1),
    "max": lambda scores: scores.flatten(1).amax(dim=1),
}
