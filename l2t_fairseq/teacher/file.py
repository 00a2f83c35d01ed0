"""Teacher files: the teacher of an ``l2t_translation`` checkpoint, alone, and reading it back for ``--teacher-path``.

A teacher file has a checkpoint's layout with the teaching state reduced to
the teacher, its Adam state and what its state's dev-BLEU feature measured, so
that ``--teacher-path`` reads a checkpoint and a teacher file alike.
"""

import os
import re

import torch

from l2t_fairseq.errors import UsageError
from l2t_fairseq.whole_files import replacing

# where checkpoints (extra_state) and teacher files keep the teaching state
CHECKPOINT_KEY = "L2TTranslationTask"


def load_teacher_state(path, vocab_size, num_keys, parametrization, dev_bleu_measure):
    """The teacher's ``state_dict`` and its Adam state (None if the file has none) from an l2t_translation
    checkpoint or teacher file, checked against this run (``dev_bleu_measure``: what this run's s_t calls dev
    BLEU; a file from before the measure was recorded is not checked)."""
    if not os.path.isfile(path):
        raise UsageError(f"--teacher-path {path}: no such file")
    try:
        # torch.load, not fairseq's loader: a teacher file holds the teacher alone, in the same layout
        saved = torch.load(path, map_location="cpu")["extra_state"][CHECKPOINT_KEY]
        teacher = saved["teacher"]
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UsageError(f"--teacher-path {path}: not an l2t_translation checkpoint ({why_unreadable(e)})") from None
    weights = "log_W" if parametrization == "exp" else "W"
    if weights not in teacher:
        saved = "exp" if "log_W" in teacher else "linear"
        raise UsageError(
            f"--teacher-path {path}: teacher was trained with --teacher-parametrization {saved}, "
            f"this run has {parametrization}"
        )
    saved_vocab, saved_keys = teacher[weights].shape
    if saved_vocab != vocab_size:
        raise UsageError(
            f"--teacher-path {path}: teacher was built for a target dictionary of {saved_vocab} words, "
            f"this task's has {vocab_size}"
        )
    if saved_keys != num_keys:
        raise UsageError(f"--teacher-path {path}: teacher has {saved_keys} keys, --teacher-keys is {num_keys}")
    measure = saved.get("dev_bleu_measure")
    if measure is not None and measure != dev_bleu_measure:
        raise UsageError(
            f"--teacher-path {path}: teacher read dev BLEU as the {measure}, this run measures the {dev_bleu_measure} "
            f"(train and teach both with --eval-bleu, or both without)"
        )
    return teacher, saved.get("teacher_optimizer")


def why_unreadable(error):
    """What ``torch.load`` or the layout found wrong, in one line: torch's refusal of an object that is no tensor or
    plain container comes with several lines of advice on loading untrusted files, which do not apply here."""
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if refused:
        return f"it holds a {refused.group(1)}, which a checkpoint does not"
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}"


def save_teacher_file(teaching_state, path, adam=True):
    """The teacher of a checkpoint's teaching state alone (with its Adam state if ``adam``: what
    ``--continue-teacher`` needs; and what its s_t measures), in the layout ``--teacher-path`` reads (kilobytes),
    written atomically."""
    kept = ("teacher", "teacher_optimizer", "dev_bleu_measure") if adam else ("teacher", "dev_bleu_measure")
    saved = {k: teaching_state[k] for k in kept if k in teaching_state}
    with replacing(path) as temporary:
        torch.save({"extra_state": {CHECKPOINT_KEY: saved}}, temporary)
