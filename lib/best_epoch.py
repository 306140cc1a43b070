"""train.py --keep-best: the model is evaluated on a validation split after every epoch, and --out gets the weights
of the best epoch instead of the last.

MEAL trains "for 25 epochs and for 32 epochs after the final acquisition step, and
chose the best model among them" (Sreenivasaiah et al. 2021, /work/shared/papers/meal.md
l.197). The paper does not say by what; we take the mIoU on the validation split, the
metric it reports ("the average value of mean IoU score on the validation dataset",
same paragraph). A tie keeps the earlier epoch.
"""
import torch.distributed as dist

from lib.data import DATASETS, open_dataset
from lib.distributed import shard_batches, sum_across
from lib.engine import evaluate_confusion, iterate_batches
from lib.errors import UserError
from lib.label_stats import check_class_pixels
from lib.metrics import mean_iou

DEFAULT_SPLIT = "val"


def add_keep_best_flags(group):
    group.add_argument("--keep-best", action="store_true",
                       help="evaluate the model on --val-split after every epoch; --out gets the weights of the epoch "
                            "of the highest mIoU (the earlier of a tie), not the last (MEAL)")
    group.add_argument("--val-split", default=None, help=f"split --keep-best evaluates on (default: {DEFAULT_SPLIT})")
    group.add_argument("--val-dataset", default=None, choices=sorted(DATASETS),
                       help="dataset layout of --val-split (default: --dataset)")
    group.add_argument("--val-data-root", default=None, help="dataset root of --val-split (default: --data-root)")


def check_keep_best_flags(args):
    given = [flag for flag, value in (("--val-split", args.val_split), ("--val-dataset", args.val_dataset),
                                      ("--val-data-root", args.val_data_root)) if value is not None]
    if given and not args.keep_best:
        raise UserError(f"{given[0]} names the data that --keep-best evaluates on: give --keep-best too, or leave "
                        f"{given[0]} out")


class BestEpoch:
    """The validation of --keep-best and its best epoch so far: the epoch's number, val mIoU and weights (a copy on
    the CPU), beside every epoch's val mIoU. Its state goes into the .resume file, so that a killed run resumes to the
    same result."""

    def __init__(self, dataset, ids, mean, std, batch_size, workers, amp):
        self.dataset, self.ids, self.mean, self.std = dataset, ids, mean, std
        self.batch_size, self.workers, self.amp = batch_size, workers, amp
        self.epoch, self.miou, self.weights, self.mious = None, None, None, []

    def update(self, epoch, model, device, world):
        """Evaluate `model` after `epoch` and keep its weights when its mIoU beats the best so far."""
        miou = self.evaluate(model, device, world)
        self.mious.append(miou)
        if self.miou is None or miou > self.miou:
            self.epoch, self.miou = epoch, miou
            self.weights = {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}

    def evaluate(self, model, device, world):
        """The mIoU of `model` on the validation split; under torchrun each process predicts a share of the images
        (as evaluate.py's), with rank 0's BatchNorm statistics (same_buffers_as_writer)."""
        same_buffers_as_writer(model, world)
        shard = shard_batches(self.ids, self.batch_size, world)
        batches = iterate_batches(self.dataset, shard, self.mean, self.std, self.batch_size, self.workers,
                                  with_masks=True, pin_memory=device.type == "cuda")
        confusion = evaluate_confusion(model, batches, self.dataset.num_classes, device,
                                       self.amp and device.type == "cuda")  # [C, C] of this process's share
        return mean_iou(sum_across(confusion, world))

    def state_dict(self):
        return {"epoch": self.epoch, "val_miou": self.miou, "val_mious": list(self.mious), "model": self.weights}

    def load_state_dict(self, state):
        self.epoch, self.miou, self.weights = state["epoch"], state["val_miou"], state["model"]
        self.mious = list(state["val_mious"])

    def record(self):
        """What the finished checkpoint says of the choice (its "training" entry)."""
        return {"best_epoch": self.epoch, "best_val_miou": self.miou, "val_miou_by_epoch": list(self.mious)}


def same_buffers_as_writer(model, world):
    """Rank 0's buffers (BatchNorm statistics) in every process's `model`. DistributedDataParallel sends rank 0's to
    the others at the start of every forward pass, and each process then updates its own with its share of the
    batch: after an epoch they differ, and the checkpoint holds rank 0's. The next step's forward would overwrite
    them anyway: training does not change."""
    if world.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def best_epoch_tracker(args, images):
    """The BestEpoch of --keep-best for a run on `images` (lib.semisup.unlabeled.TrainingImages): its validation
    split read at the training resolution (evaluate.py's default for a checkpoint too), checked to have the classes
    trained on and masks of them."""
    name, root = args.val_dataset or args.dataset, args.val_data_root or args.data_root
    split = args.val_split or DEFAULT_SPLIT
    dataset = open_dataset(name, root, split, args.cache_dir, images.dataset.resolution)
    if dataset.class_names != images.dataset.class_names:
        raise UserError(f"--keep-best: the classes of {name} split {split!r} ({', '.join(dataset.class_names)}) are "
                        f"not those trained on ({', '.join(images.dataset.class_names)})")
    ids = [image_id for image_id in dataset.ids if dataset.has_mask(image_id)]
    if not ids:
        raise UserError(f"{root}: split {split!r} has no masks for --keep-best to evaluate against")
    check_class_pixels(dataset, ids, args.workers, root, f"split {split!r}", "evaluate")
    return BestEpoch(dataset, ids, images.mean, images.std, args.batch_size, args.workers, args.amp)
