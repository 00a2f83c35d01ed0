"""Errors that reach the user as one line, not as a traceback from inside fairseq."""


class UsageError(SystemExit):
    """Bad flag or file: ``fairseq-train`` exits with status 1 and prints one line.

    A ``SystemExit`` carrying a message is printed by Python without a
    traceback, as ``argparse`` does for its own errors.
    """

    def __init__(self, message):
        super().__init__(f"l2t_fairseq: error: {message}")
