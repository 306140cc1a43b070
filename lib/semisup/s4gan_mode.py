"""--ssl s4gan (the AL study's SSL): s4GAN's discriminator judges the model's predictions of unlabeled crops.

Every step adds -u crops of the unlabeled pixels (lib.semisup.unlabeled) to its labeled
batch; the model gets s4GAN's feature-matching and self-training terms, and the
discriminator takes its own step after the model's (lib.semisup.s4gan). The
discriminator and its optimiser are part of the .resume file ("discriminator"): the
model's updates depend on them.
"""
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
    "disc_threshold": (float_in(0, 1, open_high=True), 0.2,
                       ("an unlabeled crop is trained on its own argmax when the discriminator scores its "
                        "prediction above this (TPAMI paper; the AL study's code: 0.6)")),
}


class S4GanTraining(FlagTable, SslMode):
    summary = ("a discriminator of predicted vs true label maps, feature matching and self-training on the "
               "predictions it accepts (the AL study's SSL)")

    FLAGS, MODE, CHOSEN_BY = S4GAN_FLAGS, "s4gan", "ssl"

    @classmethod
    def start(cls, args, images, lr_lambda, device):
        ids = unlabeled_images(args, images)
        if not ids:
            return SslMode()
        # Its initial weights come from torch's global RNG where the model's left it (lib.seeding).
        adversary = S4GAN(images.dataset.num_classes, args.disc_lr, args.lambda_fm, args.lambda_st,
                          args.disc_threshold, lr_lambda, device)  # on the model's schedule
        return cls(adversary, epoch_batches(args, images, ids))

    def __init__(self, adversary, batches):
        super().__init__(batches)  # crops whose unlabeled pixels are UNLABELED
        self.adversary = adversary

    def loss(self, images, logits, masks, num_labeled):
        return self.adversary.model_loss(images, logits, masks, num_labeled)

    def after_step(self, images, logits, masks, num_labeled, scaler):
        d_loss = self.adversary.discriminator_step(images, logits, masks, num_labeled, scaler)
        return {"d_loss": d_loss, "self_trained": self.adversary.accepted}

    def state_dict(self):
        return {"discriminator": self.adversary.state_dict()}

    def load_state_dict(self, state):
        self.adversary.load_state_dict(state["discriminator"])
