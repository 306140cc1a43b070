"""User-facing errors: one line on stderr and a non-zero exit, never a traceback.

Library code raises `UserError` for anything a user can fix (a bad flag, a missing
file, an id that is not in the pool). The scripts wrap `main` in `run_cli`, which
turns it into `error: <message>` and exit code `EXIT_USER_ERROR`. Anything else is a
bug and keeps its traceback.
"""
import os
import sys

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell tool killed by it


class UserError(Exception):
    """A mistake in the input that the user can fix; the message names the culprit."""

    def __init__(self, message):
        # A DataLoader worker's UserError (a corrupt image) is raised again in the main
        # process as UserError(<the worker's whole traceback>): keep its last line.
        if message.startswith("Caught UserError in DataLoader worker"):
            message = message.rstrip().rpartition(f"{__name__}.UserError: ")[2]
        super().__init__(message)


def describe_error(err):
    """`Type: first line of the message` of an exception raised by a library; the type alone when it says nothing."""
    lines = str(err).strip().splitlines()
    return f"{err.__class__.__name__}: {lines[0]}" if lines else err.__class__.__name__


def exit_code_of(main, argv=None):
    """Run `main(argv)`; 0, or EXIT_USER_ERROR after printing a UserError as its one `error:` line."""
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def run_cli(main, argv=None):
    try:
        code = exit_code_of(main, argv)
        sys.stdout.flush()  # here, where a reader that left is caught, rather than at exit
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # The reader of stdout left (`| head`): stop quietly, as shell tools do. The interpreter flushes stdout
        # again at exit; pointed at /dev/null, that flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    if code:
        sys.exit(code)
