"""--ssl selftrain (S4AL+): the student trains on the teacher's pseudo labels beside the labeled crops.

The pseudo labels (lib.semisup.selftrain) are made once, before the first epoch; every
step then adds -u strongly augmented crops of the unlabeled pixels to its labeled batch
(lib.semisup.unlabeled), and the decoder's dropout is the student's noise. Without
--teacher (an experiment's first cycle with SSL_TEACHER=previous) the run is supervised
only.
"""
from pathlib import Path

import argparse

from lib.cli import MAX_SCALE, float_in
from lib.errors import UserError
from lib.losses import mean_cross_entropy
from lib.semisup.mode import SslMode
from lib.semisup.selftrain import check_pseudo_folder, pseudo_label_files
from lib.semisup.unlabeled import epoch_batches, unlabeled_images
from lib.sliding import DEFAULT_SLIDE_WINDOW
from lib.text import plural


def scale_list(text):
    """--pseudo-scales 0.5,1,2 -> (0.5, 1.0, 2.0): distinct factors in (0, MAX_SCALE]."""
    parse = float_in(0, MAX_SCALE, open_low=True)
    try:
        scales = tuple(parse(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        scales = ()
    if not scales or len(set(scales)) < len(scales):
        raise argparse.ArgumentTypeError(f"expected distinct factors in (0, {MAX_SCALE}] like 0.5,1,2, got {text!r}")
    return scales


def pseudo_folder(args):
    """Where --ssl selftrain keeps the teacher's labels; None when no teacher labels anything."""
    if args.ssl != "selftrain" or args.teacher is None:
        return None
    return Path(args.pseudo_dir) if args.pseudo_dir else Path(args.out).parent / "pseudo"


class SelfTraining(SslMode):
    summary = ("also train on the teacher's confident labels of the unlabeled pixels (S4AL+), with dropout in the "
               "decoder as the student's noise")
    student_dropout = True
    learns_from_teacher = True

    @staticmethod
    def add_flags(group):
        group.add_argument("--teacher", default=None,
                           help="selftrain: checkpoint that labels the unlabeled pixels (the experiment scripts pass "
                                "the previous cycle's model, or a supervised one of this cycle's labels: SSL_TEACHER); "
                                "without it the run is supervised only")
        group.add_argument("--pseudo-threshold", type=float_in(0, 1, open_low=True), default=0.7,
                           help="selftrain: softmax confidence a teacher's label needs; below it the pixel is ignored")
        group.add_argument("--pseudo-scales", type=scale_list, default=None, metavar="S1,S2,...",
                           help="selftrain: the teacher's logits are the mean of its logits of the image rescaled by "
                                "each factor (bilinear, brought back to the image's size) before the softmax: S4AL+'s "
                                "code labels so at 0.5,1,2 (default: 1, the image as it is)")
        group.add_argument("--pseudo-dir", default=None,
                           help="selftrain: folder caching the pseudo labels as PNGs (default: pseudo/ next to --out)")

    @staticmethod
    def check_flags(args):
        if args.ssl != "selftrain":
            given = [flag for flag, value in (("--teacher", args.teacher), ("--pseudo-dir", args.pseudo_dir),
                                              ("--pseudo-scales", args.pseudo_scales)) if value]
            if given:
                raise UserError(f"{given[0]} labels unlabeled pixels for --ssl selftrain, but --ssl is {args.ssl}")

    @staticmethod
    def input_paths(args):
        return {"--teacher": args.teacher}

    @staticmethod
    def output_folders(args):
        return {"--pseudo-dir": pseudo_folder(args)}

    @staticmethod
    def check_folders(args):
        folder = pseudo_folder(args)
        if folder is not None:
            check_pseudo_folder(folder)

    @classmethod
    def start(cls, args, images, lr_lambda, device):
        if args.teacher is None:
            return SslMode()
        ids = unlabeled_images(args, images)
        if not ids:
            return SslMode()
        folder = pseudo_folder(args)
        scales = args.pseudo_scales or (1.0,)
        at_scales = f", logits averaged at scales {','.join(f'{s:g}' for s in scales)}" if len(scales) > 1 else ""
        print(f"pseudo labels of {plural(len(ids), 'image')} by {args.teacher} (confidence >= {args.pseudo_threshold}"
              f"{at_scales}) in {folder}")
        # Images larger than select.py's and evaluate.py's default --slide-window are labeled window by window.
        pseudo_paths = pseudo_label_files(folder, args.teacher, args.pseudo_threshold, images.dataset, ids, device,
                                          args.batch_size, args.workers, DEFAULT_SLIDE_WINDOW, scales)
        # labeled by the teacher where no true label is
        return cls(epoch_batches(args, images, ids, device, pseudo_paths))

    def loss(self, images, logits, masks, num_labeled):
        # Averaged over its own pixels: a few labels are not drowned by many pseudo labels.
        return mean_cross_entropy(logits[num_labeled:], masks[num_labeled:]), masks
