"""How many CPU threads torch's operations use (--threads).

torch starts one thread per core and keeps them spinning between operations. On a
machine shared with other work that is the worst case: a thread that lost its core
stalls the others at every barrier (training on 2 busy cores: 3.5x slower than one
thread). DataLoader workers run one thread each (torch sets it in every worker), so
--threads counts the main process's threads only.

On the CPU the thread count changes how sums are split, and so results in their last
bits: byte-identical reruns need the same count, which the default keeps on a given
machine (it depends on the CPUs the process may use, never on the load).
"""
import os

import torch


def available_cpus():
    """The CPUs this process may run on: its affinity mask, which taskset and containers' cpusets narrow."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


def default_threads(cpus, environ=os.environ):
    """The threads of a run that does not say (--threads): OMP_NUM_THREADS when the user set it to a count, else
    one per CPU but one, which is left to the DataLoader workers and the rest of the machine. On 2 busy cores
    that is 1 thread, 4x faster than torch's 2; on 2 idle cores with the default -j 2 still the faster choice
    (the closing note of issue 19 has the figures)."""
    requested = environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return max(cpus - 1, 1)


def use_threads(requested):
    """Set torch's CPU threads to `requested` (None: default_threads); returns the count."""
    count = requested or default_threads(available_cpus())
    torch.set_num_threads(count)
    return count
