"""The interface of an --ssl mode (lib.semisup.modes.SSL_MODES), and --ssl none itself: the labeled crops alone.

A mode is a class. Its class methods configure a run: the flags it owns, their checks,
the paths it reads and writes, and `start`, which makes the object that takes part in
the steps (lib.engine.train_one_epoch):

- batches(epoch, steps): the epoch's `steps` batches (images [U, 3, H, W], targets [U, H, W])
  of unlabeled crops, one behind each labeled batch; None: the labeled batches alone.
  With `separate_forward` the unlabeled crops go through the model in a call of their own
  (BatchNorm normalises each part by its own statistics), else in one call with the
  labeled crops; either way the model's outputs reach loss and after_step concatenated.
- loss(images, logits, masks, num_labeled) -> (loss, targets): the step's term beside the
  labeled crops' cross-entropy, and the batch's targets [B, H, W] as the mode labels them
  (the contrastive head, whatever the mode, learns from these targets).
- after_step(images, logits, masks, num_labeled, scaler) -> {name: value}: work after the
  model's optimiser step, before the scaler's update; the values join the progress line.
- state_dict() / load_state_dict(state): the entries the mode adds to the .resume file,
  and reading them back from it.

A mode that finds nothing to do in a run (no teacher, no unlabeled pixel) starts as this one.
"""
import torch


class SslMode:
    """--ssl none: supervised training on the labeled crops; the defaults of every other mode."""

    summary = None  # what the --ssl help says of the mode
    student_dropout = False  # the model gets the decoder's dropout layers (a noisy student)
    learns_from_teacher = False  # --teacher labels its unlabeled pixels: an experiment's previous cycle's model
    # The unlabeled crops in a forward of their own (see the module's docstring); not for S4AL+'s self-training,
    # whose code puts both in one forward (MMLAL core_models.py, SegmenthorSSL.training_step).
    separate_forward = False

    @staticmethod
    def unlabeled_batch_size(args):
        """-u when not given: 4, S4AL+'s unlabeled batch (its Table 1: 2 labeled + 4 unlabeled crops per step)."""
        return 4

    @staticmethod
    def add_flags(group):
        """Add the flags this mode owns to the parser's argument `group`."""

    @staticmethod
    def check_flags(args):
        """Refuse this mode's flags when --ssl is another mode (a UserError); fill in their defaults."""

    @staticmethod
    def input_paths(args):
        """{flag: path} this mode reads (lib.outputs.check_outputs)."""
        return {}

    @staticmethod
    def output_folders(args):
        """{flag: folder} this mode writes (lib.outputs.check_outputs)."""
        return {}

    @staticmethod
    def check_folders(args):
        """Fail before any work when an output folder of this mode holds something else (lib.owned)."""

    @classmethod
    def start(cls, args, images, lr_lambda, device):
        """The mode's part in this run; `images` are the run's lib.semisup.unlabeled.TrainingImages, `lr_lambda`
        the model's learning-rate schedule."""
        return SslMode()

    def __init__(self, batches=None):
        self._batches = batches  # (epoch, steps) -> batches of unlabeled crops; None: the labeled crops alone

    def batches(self, epoch, steps):
        return self._batches and self._batches(epoch, steps)

    def loss(self, images, logits, masks, num_labeled):
        return logits.new_zeros((), dtype=torch.float32), masks

    def after_step(self, images, logits, masks, num_labeled, scaler):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
