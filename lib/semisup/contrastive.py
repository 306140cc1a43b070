"""The --contrastive heads of train.py, by name: a representation head trained with a loss beside the
cross-entropy, whatever the --ssl mode; it learns from the batch's targets as that mode labels them."""
from lib.semisup.reco import ReCo

CONTRASTIVE_HEADS = {"reco": ReCo}  # --contrastive none: no head


def add_contrastive_flags(group):
    """--contrastive, and the flags of every head."""
    group.add_argument("--contrastive", default="none", choices=("none", *CONTRASTIVE_HEADS),
                       help="; ".join(f"{name}: {head.summary}" for name, head in CONTRASTIVE_HEADS.items()))
    for head in CONTRASTIVE_HEADS.values():
        head.add_flags(group)


def check_contrastive_flags(args):
    """Refuse the flags of a head that --contrastive does not name; fill in the defaults of its own."""
    for head in CONTRASTIVE_HEADS.values():
        head.check_flags(args)


def contrastive_model_args(args):
    """The model_args entries of the run's head (lib.models.build_model); none without a head."""
    head = CONTRASTIVE_HEADS.get(args.contrastive)  # None: --contrastive none
    return head.model_args(args) if head else {}


def contrastive_head(args):
    """The loss term of the run's head, called at every step (lib.engine.train_one_epoch); None without a head."""
    head = CONTRASTIVE_HEADS.get(args.contrastive)
    return head.from_args(args) if head else None
