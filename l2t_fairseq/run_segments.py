"""A fairseq-train run cut off and resumed in segments: what its checkpoints and logs say."""

import os
import re

import torch

from l2t_fairseq import checkpoints  # noqa: F401 - lets torch.load read fairseq checkpoints (weights_only)


def checkpoint_update(path):
    """The number of updates a fairseq checkpoint was saved after."""
    return torch.load(path, map_location="cpu")["optimizer_history"][-1]["num_updates"]


def segment_logs(run_dir, count):
    """What the first ``count`` segments of a resumed run logged (``train.segment-N.log``), in order."""
    return "".join(open(os.path.join(run_dir, f"train.segment-{n}.log")).read() for n in range(1, count + 1))


def dev_bleu_curve(log):
    """(update, dev BLEU) of every validation in a training log, in update order; a validation repeated by a
    resumed run (after the checkpoint it resumed from) counts once, as last logged."""
    pattern = r"valid on 'valid' subset \|.*?\| bleu ([0-9.]+) \|.*?num_updates (\d+)"
    return sorted({int(m.group(2)): float(m.group(1)) for m in re.finditer(pattern, log)}.items())
