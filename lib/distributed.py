"""One process per device under torchrun: which share of the work is this process's, and the collectives to join them.

    torchrun --nproc-per-node 4 train.py ...     # same flags as `python train.py ...`

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment; a plain
`python script.py` sets none and is a world of one, where every function here hands
back what it was given: the single-process run and a rank's run are the same code.
Processes talk through torch.distributed: NCCL between GPUs, gloo on the CPU (the
tests run 2 CPU processes). Rank 0 is the writer: it alone writes files and prints
to stdout, the others only compute (their stderr stays, so an error on any rank is
seen).
"""
import contextlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lib.errors import UserError


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run: `rank` of `size`, on the `local_rank`-th GPU of its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_writer(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.size > 1


SINGLE = World()


def resolve_device(name):
    """--device (auto, cpu, cuda) as a torch.device; joined() makes "cuda" this process's GPU under torchrun."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


def launched_world(environ=os.environ):
    """The World that torchrun's environment describes; SINGLE without one."""
    if "WORLD_SIZE" not in environ:
        return SINGLE
    return World(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def joined(device_name):
    """(World, torch.device) of this process, inside its process group when torchrun started it; stdout is given
    back on the way out, and the group left when the block succeeded (a failed process just exits).

    `device_name` is --device: under torchrun "cuda" (and "auto" with GPUs) is this
    process's GPU, cuda:LOCAL_RANK. A caller that runs several scripts' mains in one
    process (tests/torchrun_driver.py) joins the group once, before them: it is used,
    and left to that caller.
    """
    world = launched_world()
    device = resolve_device(device_name)
    if not world.distributed:
        yield world, device
        return
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(f"torchrun started {world.size} processes on this node but it has "
                            f"{torch.cuda.device_count()} GPUs: give --nproc-per-node at most that, or --device cpu")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                                device_id=device if device.type == "cuda" else None)
    stdout = sys.stdout
    if not world.is_writer:  # one copy of every progress line, the writer's
        sys.stdout = open(os.devnull, "w")
    try:
        yield world, device
        dist.barrier()  # a finished run leaves together; a failed process leaves at once, and torchrun stops the rest
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
    # Left after a success only: a failed process that destroys its NCCL group while the others wait in a
    # collective can hang in the destroy (pytorch/torchtitan#1342), never exit, and so never let torchrun stop them.
    if owns_group:
        dist.destroy_process_group()


def shard_batches(ids, batch_size, world):
    """This rank's ids of `ids` cut into batches of `batch_size` in order: batches rank, rank + size, ...

    Every batch a rank runs is one the single process runs, same images in the same
    order, so per-batch results (scores, features, predictions) are the same bits.
    """
    if not world.distributed:
        return list(ids)
    starts = range(world.rank * batch_size, len(ids), world.size * batch_size)
    return [item for start in starts for item in ids[start:start + batch_size]]


def rank_share(batch, world):
    """This rank's part of a training batch (sample indices): a contiguous slice, all ranks' together the batch, in
    sizes that differ by at most one (a batch needs at least world.size samples)."""
    return batch[world.rank * len(batch) // world.size:(world.rank + 1) * len(batch) // world.size]


def gather_objects(value, world):
    """[value of rank 0, value of rank 1, ...] on every rank (picklable values)."""
    if not world.distributed:
        return [value]
    gathered = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def sum_across(tensor, world):
    """`tensor` summed over the ranks, on every rank, on its device."""
    if not world.distributed:
        return tensor
    total = tensor.to(_collective_device(), copy=True)
    dist.all_reduce(total)
    return total.to(tensor.device)


def mean_across(value, world):
    """A float's mean over the ranks."""
    if not world.distributed:
        return value
    return float(sum_across(torch.tensor([value], dtype=torch.float64), world)) / world.size


def _collective_device():
    """Where NCCL wants tensors of a collective (the process's GPU); the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
