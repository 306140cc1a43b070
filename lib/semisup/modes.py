"""The --ssl modes of train.py, by name: a new mode is a lib.semisup.mode.SslMode subclass registered here."""
from lib.semisup.mode import SslMode
from lib.semisup.s4gan_mode import S4GanTraining
from lib.semisup.selftrain_mode import SelfTraining
from lib.semisup.unlabeled import add_unlabeled_batch_flag

SSL_MODES = {"none": SslMode, "selftrain": SelfTraining, "s4gan": S4GanTraining}


def add_ssl_flags(group):
    """--ssl, and the flags of every mode."""
    group.add_argument("--ssl", default="none", choices=tuple(SSL_MODES),
                       help="; ".join(f"{name}: {mode.summary}" for name, mode in SSL_MODES.items() if mode.summary))
    add_unlabeled_batch_flag(group)  # shared by the modes that train on unlabeled crops
    for mode in SSL_MODES.values():
        mode.add_flags(group)


def check_ssl_flags(args):
    """Refuse the flags of a mode that --ssl does not name; fill in the defaults of its own, and -u's."""
    for mode in SSL_MODES.values():
        mode.check_flags(args)
    if args.unlabeled_batch_size is None:
        args.unlabeled_batch_size = SSL_MODES[args.ssl].unlabeled_batch_size(args)
