"""train.py's optimiser: SGD or Adam over the model's trainable parameters, the head's at --head-lr-mult x --lr."""
import torch

from lib.errors import UserError


def check_optimizer_flags(args):
    if args.nesterov and args.optimizer != "sgd":
        raise UserError(f"--nesterov is a momentum of SGD, but --optimizer is {args.optimizer}")
    if args.nesterov and args.momentum == 0:
        raise UserError("--nesterov needs a momentum: give --momentum above 0")


def parameter_groups(model, lr, head_lr_mult):
    """The optimiser's groups of the model's trainable parameters: the backbone's at `lr`, the others' (ASPP,
    decoder, contrastive head) at `head_lr_mult` x `lr`; one group at `lr` when the multiplier is 1, as before
    --head-lr-mult, so that .resume files of then still load. A frozen backbone has no group.

    Both papers' code trains ASPP and decoder at 10x the backbone's rate: the AL study's
    (sud0301/best_practices_ALSS model/deeplabv3p.py l.183-185) and S4AL+'s, whose representation head is in the
    10x groups too (Nishant213/MMLAL core_models.py l.314-336).
    """
    if head_lr_mult == 1:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    backbone, head = model.backbone_and_head_parameters()
    groups = ({"params": backbone, "lr": lr}, {"params": head, "lr": lr * head_lr_mult})
    return [group for group in groups if group["params"]]


def make_optimizer(args, model):
    """The model's optimiser; every group follows --lr-schedule (one LambdaLR scales them all)."""
    groups = parameter_groups(model, args.lr, args.head_lr_mult)
    if args.optimizer == "adam":
        return torch.optim.Adam(groups, lr=args.lr, weight_decay=args.weight_decay)
    # The AL study's code trains without Nesterov (sud0301/best_practices_ALSS query_strategies/strategy.py l.104),
    # S4AL+'s with (Nishant213/MMLAL core_models.py l.338-343).
    return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                           nesterov=args.nesterov)
