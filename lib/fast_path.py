"""The CUDA fast path of training and inference: what runs a model quickly on a GPU without changing what it learns.

Mixed precision (bfloat16 where the GPU has it, else float16 with loss scaling),
channels_last tensors, cuDNN's autotuner, and the training loss read to the host every
LOSS_READ_STEPS steps instead of at every step. Each switches on where the device is
CUDA and stays off on the CPU, where results are those of the plain float32 loop.
"""
import math

import torch

from lib.errors import UserError

# Steps whose losses wait on the GPU to be read together: each read waits for the GPU to finish (a host sync),
# which starves it of queued work; one read per 20 steps costs little, and a diverged run stops a few steps late.
LOSS_READ_STEPS = 20


def autocast_dtype(device, amp):
    """The dtype of --amp's mixed precision on `device`; None: float32 throughout (--no-amp, or not CUDA).

    bfloat16 where the GPU computes in it natively (Ampere and later, not emulated): it has
    float32's range, so gradients cannot underflow and need no GradScaler. float16 otherwise.
    """
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def autocast(device, amp):
    """The autocast context of --amp on `device` (autocast_dtype); a disabled one without mixed precision."""
    dtype = autocast_dtype(device, amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device, amp):
    """A run's GradScaler: enabled for float16 only, whose small gradients underflow to 0 unless the loss is scaled."""
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(device, amp) == torch.float16)


def amp_note(device, amp):
    """' with AMP (bfloat16)' or ' with AMP (float16)' for a script's opening line; '' without mixed precision."""
    dtype = autocast_dtype(device, amp)
    return f" with AMP ({str(dtype).removeprefix('torch.')})" if dtype is not None else ""


def memory_format(device):
    """The layout of images sent to `device`: channels_last on CUDA, whose tensor-core convolutions work on NHWC
    (NCHW inputs would be transposed at every layer); the CPU keeps the layout it has."""
    return torch.channels_last if device.type == "cuda" else torch.preserve_format


def to_channels_last(model, device):
    """The model's convolution weights in channels_last on CUDA (see memory_format); a no-op once done, and on
    the CPU."""
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)


def tune_convolutions(device):
    """cuDNN's autotuner on CUDA: training crops all have one size, so the fastest algorithm of each convolution is
    timed once and reused. Global, like every backend flag (lib.steps restores them after each step)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def loss_read_steps(device):
    """Steps between reads of the training loss: every step on the CPU, where a read costs nothing."""
    return LOSS_READ_STEPS if device.type == "cuda" else 1


class LossReader:
    """The per-step losses of an epoch, kept on the device and read to the host together: on the first step (the
    progress line has a loss from the start), then every `every` steps, and at the end (`mean`).

    A loss that is NaN or infinite raises the divergence UserError when it is read, with
    `advice` (what to lower) after it. The mean is the same float as when every loss is
    read at its step: the same float32 values, summed in the same order in Python.
    """

    def __init__(self, every, advice):
        self.every, self.advice = every, advice
        self.pending = []  # 0-d loss tensors not read yet, on the device
        self.steps, self.total, self.last = 0, 0.0, None  # `last`: the loss last read, a float

    def add(self, loss):
        self.pending.append(loss.detach())
        self.steps += 1
        if (self.steps - 1) % self.every == 0:
            self.read()

    def read(self):
        if not self.pending:
            return
        values = torch.stack(self.pending).tolist()  # one host sync for all of them
        self.pending = []
        for value in values:
            if not math.isfinite(value):
                raise UserError(f"training diverged, the loss is {value}: {self.advice}")
            self.total += value
        self.last = values[-1]

    def mean(self):
        """The mean loss of the steps so far, every one read and checked; 0.0 without steps."""
        self.read()
        return self.total / max(self.steps, 1)
