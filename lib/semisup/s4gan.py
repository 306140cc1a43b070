"""s4GAN (Mittal, Tatarchenko and Brox, TPAMI 2019): the semi-supervised training of the AL study.

A discriminator learns to tell the annotators' label maps (one-hot) from the model's
predicted class probabilities, each seen beside its image. The segmentation model
gets, beside the cross-entropy of the labeled crops:

- feature matching: the mean discriminator features of its predictions are pulled to
  those of true label maps (lambda_fm, 0.1);
- self-training: unlabeled crops whose prediction the discriminator takes for a true
  label map (sigmoid score above `threshold`, 0.2) are trained on with their own
  argmax as labels (lambda_st, 1.0).

The discriminator sees each image min-max scaled to [0, 1] over its whole batch (all
images and channels together), as in Mittal et al.'s code (sud0301/semisup-semseg, "SSS"
below: train_s4GAN_wrn38.py l.414): the unlabeled crops by their range, the labeled crops
of the real branch by theirs. SSS's real branch is a third batch of labeled images divided by the range of the
labeled batch of the step (l.442); ours is that very labeled batch, so the two agree.

Decided beyond the paper, for partly labeled images (patch and region units) and void
pixels: a "real" map is one-hot where the annotators gave a label and the model's own
(detached) prediction elsewhere, so the discriminator cannot tell real from predicted
by the shape of the labeled area; and self-training keeps true labels where they exist
(lib.data.base.UNLABELED marks the pixels it may fill).

Other departures from Mittal et al.'s code (SSS): the real maps are those of the step's
labeled crops, not of a batch drawn apart (trainloader_gt); the discriminator averages its
last features over space where SSS pools a fixed 20x20 or 16x32 window (the same for their
321x321 and 256x512 crops), so any crop size works; self-training may start at the first
step (SSS skips step 0). The discriminator's loss is BCE on its logits, SSS's a sigmoid then
BCE: the same loss, without the sigmoid's saturation in float16.
"""
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from lib import fast_path
from lib.data.base import IGNORE_INDEX, UNLABELED
from lib.losses import mean_cross_entropy

ADAM_BETAS = (0.9, 0.99)  # Mittal et al.'s discriminator optimiser


class Discriminator(nn.Module):
    """s4GAN's: four 4x4 stride-2 convolutions over [class probabilities, image], then averaged over space.

    The average replaces the paper's fixed-size pooling, so any crop size works.
    """

    def __init__(self, num_classes, width=64):
        super().__init__()
        channels = [num_classes + 3, width, 2 * width, 4 * width, 8 * width]
        layers = []
        for depth, (c_in, c_out) in enumerate(itertools.pairwise(channels)):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            if depth < 3:
                layers.append(nn.Dropout2d(0.5))
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(8 * width, 1)

    def forward(self, maps, images):
        """[B, C, H, W] class maps, [B, 3, H, W] images -> ([B] real-vs-predicted logits, [B, 8 * width] features)."""
        features = self.body(torch.cat([maps, images], dim=1)).mean(dim=(2, 3))
        return self.classifier(features).squeeze(1), features


def real_maps(masks, probs):
    """[B, H, W] true labels and [B, C, H, W] predicted probabilities -> [B, C, H, W] maps for the discriminator.

    One-hot where a pixel has a label, the (detached) prediction where it is ignored.
    """
    known = masks != IGNORE_INDEX
    one_hot = F.one_hot(torch.where(known, masks, 0), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    return torch.where(known.unsqueeze(1), one_hot, probs.detach())


def unit_range(images):
    """[B, 3, H, W] normalised images -> the same min-max scaled to [0, 1] over the whole batch (SSS
    train_s4GAN_wrn38.py l.414); a constant batch, which has no range, to 0."""
    low, high = images.min(), images.max()
    return (images - low) / (high - low).clamp_min(torch.finfo(images.dtype).tiny)


def self_training_targets(probs, masks, accepted):
    """Targets of the unlabeled crops: [B, C, H, W] probabilities, [B, H, W] targets, [B] bool -> [B, H, W].

    Accepted crops: the argmax on their UNLABELED pixels, true labels kept. Others: true labels only.
    """
    fill = torch.where(accepted[:, None, None], probs.argmax(dim=1), IGNORE_INDEX)
    return torch.where(masks == UNLABELED, fill, masks)


class S4GAN:
    """The discriminator with its optimiser and schedule, and the two halves of an s4GAN step.

    A step's batch holds `num_labeled` labeled crops first, then unlabeled crops. `amp` is
    train.py's --amp: the discriminator's step runs in the model's precision (lib.fast_path).
    """

    def __init__(self, num_classes, lr, lambda_fm, lambda_st, threshold, lr_lambda, device, amp=False):
        self.discriminator = Discriminator(num_classes).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=ADAM_BETAS)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
        self.lambda_fm, self.lambda_st, self.threshold = lambda_fm, lambda_st, threshold
        self.device, self.amp = device, amp
        # Share of the last step's unlabeled crops that were self-trained on: a 0-d tensor on the device, read
        # with the progress line's other values, not at every step.
        self.accepted = torch.zeros((), device=device)

    def state_dict(self):
        return {name: part.state_dict() for name, part in self._parts().items()}

    def load_state_dict(self, state):
        for name, part in self._parts().items():
            part.load_state_dict(state[name])

    def _parts(self):
        return {"model": self.discriminator, "optimizer": self.optimizer, "scheduler": self.scheduler}

    def model_loss(self, images, logits, masks, num_labeled):
        """The segmentation model's loss beside the labeled crops' cross-entropy (the discriminator is fixed).

        Returns the loss and the batch's [B, H, W] targets with the self-training labels filled in.
        """
        self.discriminator.requires_grad_(False)
        probs = logits.float().softmax(dim=1)  # [B, C, H, W]
        real_images, fake_images = unit_range(images[:num_labeled]), unit_range(images[num_labeled:])
        _, real_features = self.discriminator(real_maps(masks[:num_labeled], probs[:num_labeled]), real_images)
        scores, fake_features = self.discriminator(probs[num_labeled:], fake_images)
        matching = (real_features.mean(dim=0) - fake_features.mean(dim=0)).abs().mean()
        accepted = scores.detach().sigmoid() > self.threshold  # [U]
        self.accepted = accepted.float().mean()
        targets = self_training_targets(probs[num_labeled:].detach(), masks[num_labeled:], accepted)
        loss = self.lambda_fm * matching + self.lambda_st * mean_cross_entropy(logits[num_labeled:], targets)
        return loss, torch.cat([masks[:num_labeled], targets])

    def discriminator_step(self, images, logits, masks, num_labeled, scaler):
        """One Adam step of the discriminator on the step's predictions (fake) and true label maps (real); returns
        its loss, a 0-d tensor on the device.

        `scaler` is the model's GradScaler; the caller updates it once after both steps.
        """
        self.discriminator.requires_grad_(True)
        probs = logits.detach().float().softmax(dim=1)
        real_images, fake_images = unit_range(images[:num_labeled]), unit_range(images[num_labeled:])
        with fast_path.autocast(self.device, self.amp):
            fake, _ = self.discriminator(probs[num_labeled:], fake_images)
            real, _ = self.discriminator(real_maps(masks[:num_labeled], probs[:num_labeled]), real_images)
        loss = (F.binary_cross_entropy_with_logits(fake.float(), torch.zeros_like(fake, dtype=torch.float))
                + F.binary_cross_entropy_with_logits(real.float(), torch.ones_like(real, dtype=torch.float))) / 2
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(self.optimizer)
        self.scheduler.step()
        return loss.detach()
