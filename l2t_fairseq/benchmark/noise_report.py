"""Whether the teacher found the noise: the coefficients of the target word types that occur only in corrupted
training targets, against the other target words, over training (``phi_noise.png``) and at the end
(``teacher.md``).  Needs data prepared with ``--noise`` (its ``noise.json`` beside the binarized folder)."""

import json
import os

import numpy as np
from fairseq.data import data_utils


def corrupted_lines(record):
    """The lines of the binarized training set whose target was corrupted (after ``--filter-overlap`` dropped
    pairs, the lines that were kept, renumbered)."""
    corrupted, dropped = set(record["corrupted"]), set(record.get("dropped") or ())
    kept = [i for i in range(record["pairs"]) if i not in dropped]
    return {line for line, pair in enumerate(kept) if pair in corrupted}


def noise_only_words(data, dictionary, target_prefix):
    """The dictionary indices of the target word types (BPE pieces) that occur only in corrupted training
    targets; None where the data has no noise (``DATA/../noise.json`` absent or without noise)."""
    path = os.path.join(os.path.dirname(os.path.abspath(data)), "noise.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    if not record.get("noise"):
        return None
    dataset = data_utils.load_indexed_dataset(target_prefix, dictionary)
    noisy = corrupted_lines(record)
    seen = {True: set(), False: set()}
    for line in range(len(dataset)):
        seen[line in noisy].update(dataset[line].tolist())
    words = seen[True] - seen[False] - set(range(dictionary.nspecial))
    return np.array(sorted(words), dtype=np.int64)


def ratio(phi, words, frequency):
    """Mean coefficient of ``words`` over the mean of the other words that occur as training targets."""
    phi = np.asarray(phi, dtype=np.float64)
    others = np.ones(len(phi), dtype=bool)
    others[words] = False
    others &= frequency.numpy() > 0
    return float(phi[words].mean() / phi[others].mean())


def noise_lines(phis, words, dictionary, frequency):
    """teacher.md's lines: how many noise-only word types, and each seed's ratio at its first and last logged
    Phi."""
    lines = ["", f"Word types that occur only in corrupted training targets: {len(words)} (e.g. "
             + ", ".join(f"`{dictionary[int(w)]}`" for w in words[:8]) + "). Their mean coefficient over that "
             "of the other target words, at the first and the last logged Phi:", "",
             "| seed | first | last | at update |", "|---|---|---|---|"]
    for seed, rows in sorted(phis.items()):
        if rows:
            lines.append(f"| {seed} | {ratio(rows[0][1], words, frequency):.3f} "
                         f"| {ratio(rows[-1][1], words, frequency):.3f} | {rows[-1][0]['update']} |")
    return lines
