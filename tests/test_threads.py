import pytest
import torch

from lib.threads import default_threads, use_threads


@pytest.mark.parametrize("cpus, environ, expected", [
    (2, {}, 1),  # the shared 2-core machine: one thread, the other core for the loader and the rest
    (16, {}, 15),
    (1, {}, 1),
    (16, {"OMP_NUM_THREADS": "4"}, 4),  # the user's own setting wins
    (16, {"OMP_NUM_THREADS": ""}, 15),
    (16, {"OMP_NUM_THREADS": "0"}, 15),
    (16, {"OMP_NUM_THREADS": "four"}, 15),
])
def test_the_default_leaves_a_cpu_and_follows_omp_num_threads(cpus, environ, expected):
    assert default_threads(cpus, environ) == expected


def test_use_threads_sets_torch_threads(restore_threads):
    torch.set_num_threads(1)
    assert use_threads(2) == 2 and torch.get_num_threads() == 2
    assert use_threads(None) == torch.get_num_threads() >= 1
