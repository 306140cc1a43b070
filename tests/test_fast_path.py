"""lib/fast_path.py: the precision chosen per device, the loss read every few steps, and inference outputs that
stay ordinary tensors."""
import math

import pytest
import torch
from torch import nn

from lib import fast_path
from lib.acquire.scores import embed_items
from lib.engine import evaluate_confusion
from lib.errors import UserError
from lib.units import Unit

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(params=[True, False], ids=["bf16-gpu", "fp16-gpu"])
def bf16(request, monkeypatch):
    """A GPU with native bfloat16 (Ampere and later) or without, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: request.param)
    return request.param


def test_amp_is_bfloat16_where_the_gpu_has_it_else_float16_and_never_on_the_cpu(bf16):
    assert fast_path.autocast_dtype(CUDA, True) == (torch.bfloat16 if bf16 else torch.float16)
    assert fast_path.amp_note(CUDA, True) == (" with AMP (bfloat16)" if bf16 else " with AMP (float16)")
    for device, amp in ((CUDA, False), (CPU, True), (CPU, False)):
        assert fast_path.autocast_dtype(device, amp) is None and fast_path.amp_note(device, amp) == ""


def test_emulated_bfloat16_does_not_count(monkeypatch):
    """Before Ampere torch emulates bfloat16 (slowly): is_bf16_supported says yes unless emulation is left out."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert fast_path.autocast_dtype(CUDA, True) == torch.float16


def test_only_float16_scales_the_loss(bf16, monkeypatch):
    # torch's GradScaler disables itself on a machine without CUDA: the flag it is given is what is checked.
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: (device, enabled))
    assert fast_path.grad_scaler(CUDA, True) == ("cuda", not bf16)
    assert fast_path.grad_scaler(CUDA, False) == ("cuda", False)
    assert fast_path.grad_scaler(CPU, True) == ("cpu", False)


def test_the_fast_path_leaves_a_model_on_the_cpu_as_it_is():
    model = nn.Conv2d(3, 4, 3)
    fast_path.to_channels_last(model, CPU)
    assert model.weight.is_contiguous() and fast_path.memory_format(CPU) == torch.preserve_format
    assert fast_path.memory_format(CUDA) == torch.channels_last


def test_losses_are_read_every_few_steps_and_their_mean_is_that_of_reading_each():
    losses = [torch.tensor(value) for value in (0.1, 0.2, 0.3, 0.4, 0.5)]  # float32
    reader = fast_path.LossReader(3, "advice")
    shown = []
    for loss in losses:
        reader.add(loss)
        shown.append(reader.last)
    assert reader.pending == [losses[4]]  # read at steps 1 and 4
    assert shown == [losses[0].item()] * 3 + [losses[3].item()] * 2
    assert reader.mean() == sum(loss.item() for loss in losses) / 5 and not reader.pending


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_raises_when_it_is_read(bad):
    reader = fast_path.LossReader(3, "lower --lr")
    reader.add(torch.tensor(1.0))
    reader.add(torch.tensor(bad))  # not read yet
    reader.add(torch.tensor(2.0))
    with pytest.raises(UserError, match=f"^training diverged, the loss is {bad}: lower --lr$"):
        reader.add(torch.tensor(3.0))  # step 4: read


def test_an_epoch_without_steps_has_a_mean_loss_of_zero():
    assert fast_path.LossReader(20, "advice").mean() == 0.0


def test_inference_outputs_are_ordinary_tensors_that_may_change_in_place():
    """Inference mode covers the model alone: its results may be updated in place (an inference tensor refuses)."""
    images = torch.rand(2, 3, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    confusion = evaluate_confusion(nn.Conv2d(3, 2, 1), [(["a", "b"], images, masks)], 2, CPU, False)
    _, features = embed_items(nn.Identity(), lambda model, x: model(x), [(["a", "b"], images, None)],
                              Unit().layout, CPU, False)
    for tensor in (confusion, features):
        assert not tensor.is_inference()
        tensor.add_(1)
