"""--method auto: Table 6 of the study as a rule (lib.acquire.auto)."""
import pytest

from lib.acquire.auto import AutoRule, choose_method

RULE = AutoRule(redundant=0.5, low_budget=10)


@pytest.mark.parametrize("redundancy, share, ssl, method, cell", [
    (0.2, 6, False, "random", "Random"),  # diverse, low budget
    (0.2, 6, True, "random", "Random-SSL"),
    (0.2, 30, False, "entropy", "Single"),  # diverse, high budget
    (0.2, 30, True, "entropy", "Single-SSL"),
    (0.8, 6, False, "coreset", "Batch"),  # redundant: batch at every budget
    (0.8, 6, True, "coreset", "Batch"),  # the study: SSL adds nothing at a low budget on a redundant pool
    (0.8, 30, False, "coreset", "Batch"),
    (0.8, 30, True, "coreset", "Batch-SSL"),
    (0.5, 10, False, "coreset", "Batch"),  # both thresholds are inclusive: 0.5 is redundant, 10 % is low
    (0.49, 10, False, "random", "Random"),
    (0.2, 30, None, "entropy", "Single"),  # a model file that does not say: taken as supervised
])
def test_table_6(redundancy, share, ssl, method, cell):
    choice = choose_method(redundancy, share, ssl, RULE)
    assert (choice.method, choice.cell) == (method, cell)


def test_the_choice_says_what_it_was_made_from():
    choice = choose_method(0.61234, 20.0, False, RULE)
    assert choice.to_json() == {"method": "coreset", "cell": "Batch", "redundancy": 0.6123, "redundancy_cycles": 1,
                                "redundant_at": 0.5, "labeled_share": 20.0, "low_budget_at": 10,
                                "semi_supervised": False}
    assert choice.describe() == ("auto: coreset (Table 6: Batch): redundant pool (redundancy 0.612, redundant from "
                                 "0.5), high budget (20 % labeled after this cycle, low up to 10 %), model training "
                                 "supervised")
    assert "(redundancy 0.400 over 3 cycles," in choose_method(0.4, 20.0, True, RULE, measured=3).describe()
