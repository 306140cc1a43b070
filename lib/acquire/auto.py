"""--method auto: the study's guide (Best Practices in AL for Semantic Segmentation, Table 6) as a rule.

                     low budget            high budget
                     AL        SSL-AL      AL        SSL-AL
    diverse pool     Random    Random-SSL  Single    Single-SSL
    redundant pool   Batch     Batch       Batch     Batch-SSL

The acquisition in a cell does not depend on the column: semi-supervised training
changes which model scores the pool, not which kind of method wins. So the rule picks
random, entropy (single-sample) or coreset (batch) from two measured inputs: the
pool's redundancy (lib.redundancy) against `redundant`, and the labeled share after
this cycle against `low_budget`; the study's low-budget runs (2-2) end at 10 % of the
pool, its high-budget ones (10-10, 5-5) beyond. Whether the checkpoint was trained
semi-supervised only names the cell (Random-SSL, Batch) in what is printed and recorded.
"""
from dataclasses import dataclass

# Table 6's cells: (redundant, low budget) -> (acquisition of ours, cell without SSL, cell with SSL).
GUIDE = {
    (False, True): ("random", "Random", "Random-SSL"),
    (False, False): ("entropy", "Single", "Single-SSL"),
    (True, True): ("coreset", "Batch", "Batch"),
    (True, False): ("coreset", "Batch", "Batch-SSL"),
}


@dataclass(frozen=True)
class AutoRule:
    redundant: float  # a redundancy score at or above it is a redundant pool
    low_budget: float  # a labeled share (%) after the cycle at or below it is a low budget


@dataclass(frozen=True)
class AutoChoice:
    method: str  # a name of lib.acquire.METHODS
    cell: str  # Table 6's cell
    redundancy: float  # the mean score of `measured` cycles, this one's and the earlier ones'
    labeled_share: float  # % of the pool's items labeled after this cycle
    semi_supervised: bool | None  # None: a model file that does not say (taken as supervised)
    rule: AutoRule
    measured: int = 1

    def to_json(self):
        """The history entry's record of the choice and what it was made from."""
        return {"method": self.method, "cell": self.cell, "redundancy": round(self.redundancy, 4),
                "redundancy_cycles": self.measured, "redundant_at": self.rule.redundant,
                "labeled_share": round(self.labeled_share, 4), "low_budget_at": self.rule.low_budget,
                "semi_supervised": self.semi_supervised}

    def describe(self):
        """One line: the choice and why."""
        pool = "redundant" if self.redundancy >= self.rule.redundant else "diverse"
        budget = "low" if self.labeled_share <= self.rule.low_budget else "high"
        training = {True: "semi-supervised", False: "supervised", None: "not recorded, taken as supervised"}
        over = f" over {self.measured} cycles" if self.measured > 1 else ""
        return (f"auto: {self.method} (Table 6: {self.cell}): {pool} pool (redundancy {self.redundancy:.3f}{over}, "
                f"redundant from {self.rule.redundant:g}), {budget} budget ({self.labeled_share:.3g} % labeled after "
                f"this cycle, low up to {self.rule.low_budget:g} %), model training "
                f"{training[self.semi_supervised]}")


def choose_method(redundancy, labeled_share, semi_supervised, rule, measured=1):
    """Table 6's acquisition for a pool of this redundancy (the mean score of `measured` cycles) with
    `labeled_share` % labeled after the cycle."""
    redundant = redundancy >= rule.redundant
    method, supervised_cell, ssl_cell = GUIDE[(redundant, labeled_share <= rule.low_budget)]
    return AutoChoice(method, ssl_cell if semi_supervised else supervised_cell, redundancy, labeled_share,
                      semi_supervised, rule, measured)
