"""Whether the teacher found the noise, two ways, over training (``phi_noise.png``) and at the end
(``teacher.md``): the coefficients of the target word types that occur only in corrupted training targets against
the other target words, and the mean coefficient of a corrupted target's tokens against a clean target's (each
word type weighted by its occurrences there, as the loss weights it).  Needs data prepared with ``--noise`` (its
``noise.json`` beside the binarized folder)."""

import json
import os

import numpy as np
from fairseq.data import data_utils

from l2t_fairseq.diagnostics import target_frequency


def corrupted_lines(record):
    """The lines of the binarized training set whose target was corrupted (after ``--filter-overlap`` dropped
    pairs, the lines that were kept, renumbered)."""
    corrupted, dropped = set(record["corrupted"]), set(record.get("dropped") or ())
    kept = [i for i in range(record["pairs"]) if i not in dropped]
    return {line for line, pair in enumerate(kept) if pair in corrupted}


class TargetNoise:
    """How often each target word type occurs in the corrupted training targets and in the clean ones."""

    def __init__(self, corrupted, clean, nspecial):
        self.corrupted, self.clean = np.asarray(corrupted, np.float64), np.asarray(clean, np.float64)
        only = (self.corrupted > 0) & (self.clean == 0)
        only[:nspecial] = False
        self.only = np.flatnonzero(only)  # the noise-only word types

    @classmethod
    def of(cls, data, dictionary, target_prefix, frequency):
        """The counts in ``data``'s training targets (``frequency``: each word type's count in all of them, from
        :func:`~l2t_fairseq.diagnostics.target_frequency`); None where the data has no noise
        (``DATA/../noise.json`` absent or without noise)."""
        path = os.path.join(os.path.dirname(os.path.abspath(data)), "noise.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            record = json.load(f)
        if not record.get("noise"):
            return None
        dataset = data_utils.load_indexed_dataset(target_prefix, dictionary)
        corrupted = target_frequency([dataset[line] for line in sorted(corrupted_lines(record))], len(dictionary))
        return cls(corrupted, frequency - corrupted, dictionary.nspecial)

    def word_ratio(self, phi):
        """Mean coefficient of the noise-only word types over the mean of the other types the targets hold."""
        phi = np.asarray(phi, dtype=np.float64)
        others = (self.corrupted + self.clean > 0)
        others[self.only] = False
        return float(phi[self.only].mean() / phi[others].mean())

    def token_ratio(self, phi):
        """Mean coefficient over the tokens of the corrupted targets over that over the clean targets' tokens."""
        phi = np.asarray(phi, dtype=np.float64)
        return float((self.corrupted @ phi / self.corrupted.sum()) / (self.clean @ phi / self.clean.sum()))


def noise_lines(phis, noise, dictionary):
    """teacher.md's lines: how many noise-only word types, and each seed's two ratios at its first and last
    logged Phi."""
    lines = ["", f"Word types that occur only in corrupted training targets: {len(noise.only)} (e.g. "
             + ", ".join(f"`{dictionary[int(w)]}`" for w in noise.only[:8]) + "). Their mean coefficient over "
             "that of the other target words (noise-only types), and the mean coefficient of a corrupted target's "
             "tokens over that of a clean target's (tokens), at the first and the last logged Phi:", "",
             "| seed | noise-only types, first | last | tokens, first | last | at update |",
             "|---|---|---|---|---|---|"]
    for seed, rows in sorted(phis.items()):
        if rows:
            first, last = rows[0][1], rows[-1][1]
            lines.append(f"| {seed} | {noise.word_ratio(first):.3f} | {noise.word_ratio(last):.3f} "
                         f"| {noise.token_ratio(first):.3f} | {noise.token_ratio(last):.3f} "
                         f"| {rows[-1][0]['update']} |")
    return lines
