"""The flags of a training mode (--ssl s4gan, --contrastive reco), refused while their mode is off.

A mode's flags are {name: (type, default, help)}. They parse to None, so that one given
without its mode is caught, and take their default afterwards (fill_mode_flags): the
checkpoint records the values a run used, and None for the flags of a mode that was off.
"""
from lib.errors import UserError


class FlagTable:
    """add_flags and check_flags of a mode whose flags are a table: FLAGS, chosen by `--CHOSEN_BY MODE`."""

    FLAGS = {}
    MODE = None
    CHOSEN_BY = None

    @classmethod
    def add_flags(cls, group):
        add_mode_flags(group, cls.MODE, cls.FLAGS)

    @classmethod
    def check_flags(cls, args):
        fill_mode_flags(args, cls.FLAGS, cls.CHOSEN_BY, cls.MODE)


def add_mode_flags(group, mode, flags):
    for name, (kind, default, text) in flags.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                           help=f"{mode}: {text} (default: {default})")


def fill_mode_flags(args, flags, mode_flag, mode):
    """Refuse the `flags` of a mode that is off; when it is on, fill in their defaults (recorded in the checkpoint)."""
    on = getattr(args, mode_flag) == mode
    for name, (_, default, _) in flags.items():
        if getattr(args, name) is None:
            setattr(args, name, default if on else None)
        elif not on:
            raise UserError(f"--{name.replace('_', '-')} configures --{mode_flag} {mode}, "
                            f"but --{mode_flag} is {getattr(args, mode_flag)}")
