"""Errors that reach the user as one line, not as a traceback from inside fairseq."""


class UsageError(SystemExit):
    """Bad flag or file: ``fairseq-train`` exits with status 1 and prints one line.

    A ``SystemExit`` carrying a message is printed by Python without a
    traceback, as ``argparse`` does for its own errors.
    """

    def __init__(self, message):
        super().__init__(f"l2t_fairseq: error: {message}")


# what pip installs the modules as, where the names differ
PIP_NAMES = {"sklearn": "scikit-learn", "PIL": "Pillow", "yaml": "pyyaml"}


def missing_module(error, what):
    """The one line for ``what`` that could not be imported because a module is not installed (``error``: the
    ``ModuleNotFoundError``), naming that module and how pip installs it."""
    module = (error.name or str(error)).split(".")[0]
    return UsageError(f"{what} needs the module {module}, which is not installed in this Python environment: "
                      f"pip install {PIP_NAMES.get(module, module)} (README, Install)")
