"""s4GAN (train.py --ssl s4gan): the discriminator, its real maps, self-training targets, one step, the CLI."""
import json

import pytest
import torch

from conftest import RecordedProgress, fail, import_script
from lib import training_run
from lib.data import IGNORE_INDEX
from lib.engine import batch_forward, train_one_epoch
from lib.losses import make_criterion
from lib.models import build_model
from lib.optim import make_optimizer
from lib.semisup.s4gan import S4GAN, Discriminator, real_maps, self_training_targets, unit_range
from lib.semisup.s4gan_mode import S4GanTraining
from lib.semisup.unlabeled import UNLABELED

train, select = import_script("train.py"), import_script("select.py")
CPU = torch.device("cpu")


def test_the_discriminator_scores_crops_of_any_size():
    discriminator = Discriminator(num_classes=5, width=4)
    for height, width in ((32, 48), (40, 24)):
        scores, features = discriminator(torch.rand(3, 5, height, width), torch.randn(3, 3, height, width))
        assert scores.shape == (3,) and features.shape == (3, 32)


def test_real_maps_are_one_hot_where_labeled_and_the_prediction_elsewhere():
    probs = torch.rand(1, 3, 2, 2).softmax(dim=1).requires_grad_()
    masks = torch.tensor([[[2, IGNORE_INDEX], [0, 1]]])
    maps = real_maps(masks, probs)
    assert maps[0, :, 0, 0].tolist() == [0, 0, 1] and maps[0, :, 1, 0].tolist() == [1, 0, 0]
    assert torch.equal(maps[0, :, 0, 1], probs[0, :, 0, 1].detach()) and not maps.requires_grad


def test_self_training_labels_only_pixels_without_a_true_label_of_accepted_crops():
    probs = torch.zeros(2, 3, 1, 4)
    probs[:, 1] = 1  # the argmax is class 1 everywhere
    masks = torch.tensor([[[UNLABELED, 2, IGNORE_INDEX, UNLABELED]]] * 2)
    targets = self_training_targets(probs, masks, torch.tensor([True, False]))
    assert targets.tolist() == [[[1, 2, IGNORE_INDEX, 1]], [[IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX]]]


def tiny_setup(threshold=0.2, lambda_fm=0.1, lambda_st=1.0):
    torch.manual_seed(0)
    model = build_model({"arch": "tiny", "num_classes": 4, "output_stride": 16, "mc_dropout": False})
    adversary = S4GAN(4, 1e-3, lambda_fm, lambda_st, threshold, lambda step: 1.0, CPU)
    labeled = (torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32)))
    unlabeled = (torch.randn(3, 3, 32, 32), torch.full((3, 32, 32), UNLABELED))
    return model, adversary, labeled, unlabeled


def test_one_step_changes_both_networks_and_its_losses_are_finite():
    model, adversary, labeled, unlabeled = tiny_setup()
    before = [{k: v.clone() for k, v in net.state_dict().items()} for net in (model, adversary.discriminator)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    progress = RecordedProgress()
    mode = S4GanTraining(adversary, batches=lambda epoch, steps: iter([unlabeled] * steps))
    loss = train_one_epoch(model, 1, [labeled], mode, None, optimizer, scheduler,
                           torch.amp.GradScaler("cpu", enabled=False), CPU, progress)
    (values,) = progress.values
    assert torch.isfinite(torch.tensor([loss, values["d_loss"]])).all() and values["loss"] == loss
    assert 0 <= values["self_trained"] <= 1 and adversary.scheduler.last_epoch == 1
    for net, old in zip((model, adversary.discriminator), before):
        changed = [name for name, tensor in net.state_dict().items() if not torch.equal(tensor, old[name])]
        assert any(name.endswith("weight") for name in changed), type(net).__name__


def test_the_model_loss_trains_the_model_only_and_self_trains_past_the_threshold():
    model, adversary, (images, masks), (extra, extra_masks) = tiny_setup(lambda_fm=0.0)
    images, masks = torch.cat([images, extra]), torch.cat([masks, extra_masks])
    logits = model(images)
    for threshold, share in ((1.0, 0.0), (0.0, 1.0)):  # no sigmoid exceeds 1; every one exceeds 0
        adversary.threshold = threshold
        loss, targets = adversary.model_loss(images, logits, masks, 2)
        assert adversary.accepted == share and torch.equal(targets[:2], masks[:2])
        expected = torch.nn.functional.cross_entropy(logits[2:], logits[2:].argmax(dim=1)).item() if share else 0.0
        assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert all(p.grad is None for p in adversary.discriminator.parameters())
    assert model.decoder.classifier.weight.grad.abs().sum() > 0


def train_argv(pool, index, out):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(index), "--arch", "tiny",
            "--epochs", "2", "--batch-size", "2", "--crop", "32x48", "--workers", "0", "--device", "cpu",
            "--out", str(out)]


@pytest.mark.parametrize("unit, budget", [
    ([], 4), (["--unit", "patch", "--grid", "2x2"], 12), (["--unit", "region", "--region-size", "16"], 10),
], ids=["image", "patch", "region"])
def test_s4gan_through_the_command_line(synthetic_pool, tmp_path, capsys, unit, budget):
    data = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    index = tmp_path / "index.json"
    select.main([*data, "--method", "random", "--budget", str(budget), *unit, "--out", str(index)])
    out = tmp_path / "model.pt"
    train.main([*train_argv(synthetic_pool, index, out), "--ssl", "s4gan", "--disc-lr", "2.5e-5", "-u", "3"])
    assert "self_trained=" in capsys.readouterr().out
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["train_args"]["disc_lr"] == 2.5e-5 and checkpoint["train_args"]["disc_threshold"] == 0.2
    assert "discriminator" not in checkpoint and not checkpoint["model_args"]["mc_dropout"]
    select.main([*data, "--index", str(index), "--checkpoint", str(out), "--method", "entropy", "--budget", "2",
                 "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "next.json")])
    assert len(json.loads((tmp_path / "next.json").read_text())["labeled"]) == budget + 2


def test_misplaced_s4gan_flags_are_one_line_errors(synthetic_pool, tmp_path, capsys):
    data = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    select.main([*data, "--method", "random", "--budget", "4", "--out", str(tmp_path / "index.json")])
    argv = train_argv(synthetic_pool, tmp_path / "index.json", tmp_path / "model.pt")
    assert "--disc-lr configures --ssl s4gan, but --ssl is selftrain" in fail(
        train, [*argv, "--ssl", "selftrain", "--disc-lr", "1e-4"], capsys)
    assert "--lambda-fm configures --ssl s4gan, but --ssl is none" in fail(train, [*argv, "--lambda-fm", "1"], capsys)
    assert "argument --disc-threshold: must be a finite number in [0, 1], got '1.5'" in fail(
        train, [*argv, "--ssl", "s4gan", "--disc-threshold", "1.5"], capsys)
    assert "argument --disc-lr: must be a finite number in (0, inf), got '0'" in fail(
        train, [*argv, "--ssl", "s4gan", "--disc-lr", "0"], capsys)
    assert not (tmp_path / "model.pt").exists()


def recorded_training(monkeypatch, argv):
    """train.main(argv) -> (the labeled crops' loss of every step, the model's gradients at every step)."""
    losses, gradients = [], []

    def recording_criterion(*args, **kwargs):
        criterion = make_criterion(*args, **kwargs)

        def record(logits, masks):
            loss = criterion(logits, masks)
            losses.append(loss.detach().clone())
            return loss
        return record

    def recording_optimizer(args, model):
        optimizer = make_optimizer(args, model)
        optimizer.register_step_pre_hook(lambda optimizer, *_: gradients.append(
            [p.grad.clone() for group in optimizer.param_groups for p in group["params"]]))
        return optimizer

    monkeypatch.setattr(train, "make_criterion", recording_criterion)
    monkeypatch.setattr(training_run, "make_optimizer", recording_optimizer)
    train.main(argv)
    monkeypatch.undo()
    return losses, gradients


def test_s4gan_without_its_terms_trains_the_labeled_crops_as_supervised_training(synthetic_pool, tmp_path,
                                                                                  monkeypatch, capsys):
    """Issue 16: with no feature matching and a threshold no crop reaches (1), the unlabeled crops go through the
    model in a forward of their own, so the labeled crops' loss and the model's gradients are those of --ssl none,
    step for step (CPU: no AMP)."""
    data = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    index = tmp_path / "index.json"
    select.main([*data, "--method", "random", "--budget", "4", "--out", str(index)])
    runs = {}
    for name, flags in (("none", []), ("s4gan", ["--ssl", "s4gan", "--lambda-fm", "0", "--disc-threshold", "1"])):
        out = tmp_path / f"{name}.pt"
        losses, gradients = recorded_training(monkeypatch, [*train_argv(synthetic_pool, index, out), *flags])
        runs[name] = losses, gradients, torch.load(out, weights_only=True)
    assert "self_trained=0.0000" in capsys.readouterr().out
    (losses, gradients, supervised), (s4gan_losses, s4gan_gradients, s4gan) = runs["none"], runs["s4gan"]
    assert len(losses) == len(gradients) == 4, "2 epochs of 2 steps"
    assert torch.equal(torch.stack(losses), torch.stack(s4gan_losses))
    for step, (step_gradients, s4gan_step_gradients) in enumerate(zip(gradients, s4gan_gradients), start=1):
        assert len(step_gradients) == len(s4gan_step_gradients)
        assert all(map(torch.equal, step_gradients, s4gan_step_gradients)), f"the gradients of step {step} differ"
    parameters = [name for name, _ in build_model(supervised["model_args"]).named_parameters()]
    assert all(torch.equal(supervised["model"][name], s4gan["model"][name]) for name in parameters)
    # The unlabeled crops did go through the model, in training mode: BatchNorm's running statistics saw them.
    statistics = "aspp.project.1.running_mean"
    assert not torch.equal(supervised["model"][statistics], s4gan["model"][statistics])
    # Mittal et al.'s unlabeled batch is as large as the labeled one; S4AL+'s is 4.
    assert s4gan["train_args"]["unlabeled_batch_size"] == 2 and supervised["train_args"]["unlabeled_batch_size"] == 4


def test_the_discriminator_sees_each_batch_scaled_to_the_unit_range():
    batch = torch.stack([torch.full((3, 2, 2), -2.0), torch.linspace(-1, 3, 12).view(3, 2, 2)])
    scaled = unit_range(batch)
    assert scaled.min() == 0 and scaled.max() == 1
    assert torch.allclose(scaled, (batch + 2) / 5)  # one range for all images and channels, none stretched alone
    assert torch.equal(unit_range(torch.full((2, 3, 2, 2), 7.0)), torch.zeros(2, 3, 2, 2))  # no range: no NaN
    model, adversary, (images, masks), (extra, extra_masks) = tiny_setup()
    adversary.discriminator.eval()  # no dropout: the same discriminator for both calls
    images, masks = torch.cat([images, extra]), torch.cat([masks, extra_masks])
    logits = model(images)
    loss, _ = adversary.model_loss(images, logits, masks, 2)
    moved, _ = adversary.model_loss(3 * images + 1, logits, masks, 2)  # another normalisation of the same images
    assert moved.item() == pytest.approx(loss.item(), rel=1e-5)


def test_the_unlabeled_crops_may_go_through_the_model_apart():
    torch.manual_seed(0)
    model = build_model({"arch": "tiny", "num_classes": 4, "output_stride": 16, "mc_dropout": False, "embed_dim": 8})
    images = torch.randn(5, 3, 32, 32)
    logits, embeddings = batch_forward(model, images, 2, with_embeddings=True)
    (first, first_embeddings), (rest, rest_embeddings) = (model.forward_with_embeddings(part)
                                                          for part in (images[:2], images[2:]))
    assert torch.equal(logits, torch.cat([first, rest])) and torch.equal(embeddings, torch.cat([first_embeddings,
                                                                                                rest_embeddings]))
    joint, none = batch_forward(model, images, 5, with_embeddings=False)
    assert torch.equal(joint, model(images)) and none is None and not torch.allclose(joint, logits)


def test_workers_change_no_weight(synthetic_pool, tmp_path):
    """-j 2's loaders live through the run (one iterator each), -j 0's make one an epoch: neither draws from the
    global RNG that s4GAN's steps use (lib.engine.persistent_loader), so the weights are the same."""
    index = tmp_path / "index.json"
    select.main(["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--method", "random", "--budget", "4",
                 "--out", str(index)])
    weights = []
    for workers in ("0", "2"):
        out = tmp_path / f"j{workers}.pt"
        train.main([*train_argv(synthetic_pool, index, out), "--ssl", "s4gan", "--epochs", "3", "--workers", workers])
        weights.append(torch.load(out, weights_only=True)["model"])
    assert all(torch.equal(tensor, weights[1][name]) for name, tensor in weights[0].items())
