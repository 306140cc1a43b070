"""What a training run updates and its .resume files keep: the model, optimiser, learning-rate schedule and AMP
scaler, started from --seed, --pretrained and --init-head-from (train.py)."""
from dataclasses import dataclass

import torch

from lib import fast_path, seeding
from lib.distributed import SINGLE
from lib.engine import LR_SCHEDULES
from lib.fixed_steps import total_steps
from lib.head_init import load_head
from lib.models import build_model
from lib.optim import make_optimizer
from lib.pretrained import load_pretrained_backbone
from lib.semisup.contrastive import contrastive_model_args
from lib.semisup.modes import SSL_MODES


def model_arguments(args, num_classes):
    """The model_args of the checkpoint (lib.models.build_model)."""
    return {
        "arch": args.arch, "num_classes": num_classes, "output_stride": args.output_stride,
        "mc_dropout": args.mc_dropout or SSL_MODES[args.ssl].student_dropout,
        **contrastive_model_args(args),
    }


@dataclass
class Run:
    """What the steps of training update and a .resume file keeps: the model, its optimiser, learning-rate schedule
    (`lr_lambda`: the factor per step) and AMP loss scaler, on `device`; `network` is what the steps call: the model,
    or under torchrun its DistributedDataParallel wrapper, which averages the gradients of the processes."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_lambda: object
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    device: torch.device
    network: torch.nn.Module

    # What only a run that goes on needs (--resume): the finished model's file leaves them out.
    RESUME_STATES = ("optimizer", "scheduler", "scaler")

    def state_dict(self):
        return {name: getattr(self, name).state_dict() for name in ("model", *self.RESUME_STATES)}

    def load_state_dict(self, state):
        for name in ("model", *self.RESUME_STATES):
            getattr(self, name).load_state_dict(state[name])


def start_run(args, model_args, num_samples, device, world=SINGLE, head=None):
    """The initial model (seeded by --seed: the same on every process) on `device`, with its optimiser, schedule
    (over the steps of `num_samples` labeled samples an epoch) and scaler; `head`: --init-head-from's tensors
    (head_weights), loaded over the initial ones."""
    seeding.seed_initial_weights(args.seed)
    model = build_model(model_args)
    if args.pretrained:
        load_pretrained_backbone(model, args.pretrained, args.arch)
    if head is not None:
        load_head(model, head, args.init_head_from)
    if args.freeze_backbone:
        model.freeze_backbone()
    if args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # the same state dict keys as BatchNorm2d
    model.to(device)
    fast_path.to_channels_last(model, device)  # before DistributedDataParallel, which keeps the layout of its buckets
    network = model
    if world.distributed:
        network = torch.nn.parallel.DistributedDataParallel(model, [device] if device.type == "cuda" else None)
    optimizer = make_optimizer(args, model)
    lr_lambda = LR_SCHEDULES[args.lr_schedule](total_steps(num_samples, args.batch_size, args.epochs,
                                                           args.steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    scaler = fast_path.grad_scaler(device, args.amp)
    return Run(model, optimizer, lr_lambda, scheduler, scaler, device, network)
