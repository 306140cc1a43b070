"""Small tensor helpers of the UMAP steps: deterministic sums, and torch's CPU threads kept in check."""
import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

MAX_SEARCH_THREADS = 8  # at most this many distance blocks in flight (256 MiB)


def scatter_sum(index, values, size):
    """out[i] = sum of values[index == i]: [size, ...], deterministic on every device."""
    out = values.new_zeros((size,) + values.shape[1:])
    if values.is_cuda:  # index_add_ uses atomics there, whose order varies; index_put_ sorts
        return out.index_put_((index,), values, accumulate=True)
    return out.index_add_(0, index, values)


@contextlib.contextmanager
def one_cpu_thread(device):
    """Run torch's CPU operations on one thread inside the block, the caller's count restored after.

    torch splits each operation over its threads and waits for the slowest. The
    layout is thousands of small operations: two threads could at best halve its
    time on 2 idle cores, while with another process holding a core an epoch took
    ten times as long as on one thread (measured at 10,000 points: 90-250 ms
    against 9 ms).
    """
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_chunks(fn, starts, device):
    """[fn(start) for start in starts], on the CPU spread over torch's threads, each running torch on one.

    Whole chunks per thread rather than each product split over all threads: idle
    cores stay as busy, and no thread waits on a descheduled one when another process
    holds a core (2 cores under load, 20,000-point search: 7.4 s split, 4.6 s in
    chunks). Each chunk's result is the same whichever thread computes it.
    """
    if device.type != "cpu":
        return [fn(start) for start in starts]
    workers = min(torch.get_num_threads(), MAX_SEARCH_THREADS)
    with one_cpu_thread(device), ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(fn, starts))


def as_features(features, device):
    """[N, d] float32 tensor on `device`, from a tensor or an array."""
    features = features if torch.is_tensor(features) else torch.as_tensor(np.asarray(features))
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be a non-empty [N, d] matrix, got shape {tuple(features.shape)}")
    return features.to(device, torch.float32)
