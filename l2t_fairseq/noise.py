"""Noisy parallel data, as Khayrallah & Koehn (2018, "On the Impact of Various Types of Noise on Neural Machine
Translation") describe two of its kinds, and how much of a target copies its source.

- ``untranslated``: the target is a copy of the source (the kind they found most harmful: models learn to copy);
- ``misaligned``: the target belongs to another sentence (no word-type signal: the control).

Only training pairs are corrupted; dev and test stay clean.
"""

import random

NOISE_KINDS = ("untranslated", "misaligned")


def parse_noise(text):
    """``KIND:RATE`` (``untranslated:0.2``) as (kind, rate); ValueError with one line saying what is wrong."""
    kind, _, rate = text.partition(":")
    if kind not in NOISE_KINDS:
        raise ValueError(f"--noise {text}: the kind must be one of {', '.join(NOISE_KINDS)} (KIND:RATE)")
    try:
        rate = float(rate)
    except ValueError:
        raise ValueError(f"--noise {text}: the rate must be a number in (0, 1] (KIND:RATE)") from None
    if not 0 < rate <= 1:
        raise ValueError(f"--noise {text}: the rate must be in (0, 1], got {rate}")
    return kind, rate


def corrupt(sources, targets, kind, rate, seed):
    """``targets`` with ``round(rate * len(targets))`` pairs corrupted (chosen by ``seed``), and the sorted
    indices of those pairs.  A misaligned pair takes the target of another pair, drawn by the same seed."""
    count = len(targets)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(count), round(rate * count)))
    noisy = list(targets)
    for index in chosen:
        if kind == "untranslated":
            noisy[index] = sources[index]
        else:
            other = rng.randrange(count - 1)
            noisy[index] = targets[other if other < index else other + 1]
    return noisy, chosen


def copy_share(source, target):
    """The share of the target's tokens that occur in the source (whitespace tokens): 1 for a copy."""
    tokens = target.split()
    if not tokens:
        return 0.0
    seen = set(source.split())
    return sum(token in seen for token in tokens) / len(tokens)
