"""--ssl s4gan (the AL study's SSL): s4GAN's discriminator judges the model's predictions of unlabeled crops.

Every step adds -u crops of the unlabeled pixels (lib.semisup.unlabeled) to its labeled
batch; -u defaults to -b, as Mittal et al.'s --batch-size-unlab defaults to their
--batch-size (sud0301/semisup-semseg train_s4GAN_wrn38.py l.85). The two go through the
model in separate forward passes, as in their code (same file, l.399 and l.411), so
BatchNorm normalises the labeled crops by their own statistics: without the s4GAN terms
(--lambda-fm 0, --disc-threshold 1) the run trains the labeled crops exactly as --ssl
none does. The model gets s4GAN's feature-matching and self-training terms, and the
discriminator takes its own step after the model's (lib.semisup.s4gan). The
discriminator and its optimiser are part of the .resume file ("discriminator"): the
model's updates depend on them.
"""
from lib import fast_path
from lib.cli import float_in, non_negative_float, positive_float
from lib.semisup.flags import FlagTable
from lib.semisup.mode import SslMode
from lib.semisup.s4gan import S4GAN
from lib.semisup.unlabeled import epoch_batches, unlabeled_images

S4GAN_FLAGS = {  # Mittal et al.'s defaults
    "disc_lr": (positive_float, 1e-4, ("Adam learning rate of the discriminator, on --lr-schedule like the model's "
                                       "(the AL study: 2.5e-5 on Cityscapes and A2D2)")),
    "lambda_fm": (non_negative_float, 0.1, "weight of the feature-matching loss"),
    "lambda_st": (non_negative_float, 1.0, "weight of the self-training loss"),
    "disc_threshold": (float_in(0, 1), 0.2,
                       ("an unlabeled crop is trained on its own argmax when the discriminator scores its "
                        "prediction above this (TPAMI paper; the AL study's code: 0.6); 1: never")),
}


class S4GanTraining(FlagTable, SslMode):
    summary = ("a discriminator of predicted vs true label maps, feature matching and self-training on the "
               "predictions it accepts (the AL study's SSL)")

    FLAGS, MODE, CHOSEN_BY = S4GAN_FLAGS, "s4gan", "ssl"
    separate_forward = True

    @staticmethod
    def unlabeled_batch_size(args):
        return args.batch_size  # Mittal et al.'s --batch-size-unlab defaults to --batch-size (see above)

    @classmethod
    def start(cls, args, images, lr_lambda, device):
        ids = unlabeled_images(args, images)
        if not ids:
            return SslMode()
        # Its initial weights come from torch's global RNG where the model's left it (lib.seeding).
        adversary = S4GAN(images.dataset.num_classes, args.disc_lr, args.lambda_fm, args.lambda_st,
                          args.disc_threshold, lr_lambda, device, args.amp)  # on the model's schedule
        return cls(adversary, epoch_batches(args, images, ids, device), fast_path.loss_read_steps(device))

    def __init__(self, adversary, batches, read_every=1):
        super().__init__(batches)  # crops whose unlabeled pixels are UNLABELED
        self.adversary = adversary
        # The values of the progress line stay on the device and are read every `read_every` steps, with the
        # model's loss (lib.fast_path.LossReader): a read per step would wait for the GPU at every step.
        advice = f"lower --disc-lr ({adversary.optimizer.defaults['lr']:g})"
        self.d_losses = fast_path.LossReader(read_every, advice)
        self.shares = fast_path.LossReader(read_every, advice)

    def loss(self, images, logits, masks, num_labeled):
        return self.adversary.model_loss(images, logits, masks, num_labeled)

    def after_step(self, images, logits, masks, num_labeled, scaler):
        self.d_losses.add(self.adversary.discriminator_step(images, logits, masks, num_labeled, scaler))
        self.shares.add(self.adversary.accepted)
        return {"d_loss": self.d_losses.last, "self_trained": self.shares.last}

    def state_dict(self):
        return {"discriminator": self.adversary.state_dict()}

    def load_state_dict(self, state):
        self.adversary.load_state_dict(state["discriminator"])
