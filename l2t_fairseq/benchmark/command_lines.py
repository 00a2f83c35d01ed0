"""Reading and comparing the ``fairseq-train`` command lines that runs were recorded with."""

import json
import os
import shlex

# learning-rate schedules that read the update number alone, never the budget (fairseq's default is fixed)
BUDGET_FREE_SCHEDULES = {"fixed", "inverse_sqrt", "step"}


def after(words, flag, default=None):
    """The value of ``flag`` in a command line (its last occurrence), or ``default``."""
    positions = [i for i, word in enumerate(words) if word == flag]
    return words[positions[-1] + 1] if positions else default


def without(words, *flags):
    """A command line without these flags and their values."""
    words = list(words)
    for flag in flags:
        if flag in words:
            index = words.index(flag)
            del words[index:index + 2]
    return words


def extends(saved, command):
    """Whether ``command`` is ``saved`` with a larger ``--max-update`` and nothing that reads the budget: a
    learning-rate schedule of the update number alone and no teacher (whose state includes the training's
    progress, update / budget).  Trained on from the shorter run's end, it is the longer run."""
    budget = after(saved, "--max-update")
    if budget is None or after(command, "--max-update") is None:
        return False
    return (without(saved, "--max-update") == without(command, "--max-update")
            and int(after(command, "--max-update")) > int(budget)
            and after(command, "--lr-scheduler", "fixed") in BUDGET_FREE_SCHEDULES
            and after(command, "--task") != "l2t_translation")


def same_run_record(folder, name, command, same_kernels):
    """The run record ``folder/name.json`` (of the benchmark or the search) if its run had exactly ``command``
    but for where it saved its checkpoints, on the same kernels (``same_kernels(record)``, asked only where the
    commands are the same), else None (also without a folder)."""
    if not folder or not os.path.isfile(os.path.join(folder, name + ".json")):
        return None
    with open(os.path.join(folder, name + ".json")) as f:
        record = json.load(f)
    same = without(shlex.split(record["command"]), "--save-dir") == without(command[3:], "--save-dir")
    return record if same and same_kernels(record) else None


def validation_update(fraction, args):
    """The update at ``fraction`` of the budget, rounded down to a validation (where checkpoints are saved), and
    at least the first one."""
    return max(args.validate_every, int(fraction * args.max_update) // args.validate_every * args.validate_every)
