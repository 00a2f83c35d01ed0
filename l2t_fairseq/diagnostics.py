"""What the teacher learned: its coefficients by target-word frequency (written to ``teacher.jsonl``, plotted by
``l2t-plots``)."""

import numpy as np
import torch

# bands of target words by frequency rank (1 = most frequent): (first rank, last rank or None for the rest)
BANDS = ((1, 100), (101, 1000), (1001, None))


def band_name(first, last):
    return f"{first}-{last}" if last else f"{first}-"


def target_frequency(dataset, vocab_size):
    """How often each word of the target dictionary occurs in ``dataset`` (a fairseq indexed dataset)."""
    tokens = np.concatenate([np.asarray(dataset[i], dtype=np.int64) for i in range(len(dataset))])
    return torch.from_numpy(np.bincount(tokens, minlength=vocab_size)[:vocab_size])


def frequency_ranks(frequency):
    """The dictionary indices of the words that occur, most frequent first."""
    order = torch.argsort(frequency, descending=True, stable=True)
    return order[frequency[order] > 0]


def phi_bands(phi, frequency):
    """Mean, std, min and max of ``Phi`` over each frequency band of the words that occur as targets.

    Words that never occur as a target (source-only words of a joined
    dictionary, unused symbols) get no hypergradient and are left out.
    """
    ranked = frequency_ranks(frequency)
    bands = {}
    for first, last in BANDS:
        members = ranked[first - 1:last]
        if len(members) == 0:
            continue
        values = phi[members].double()
        bands[band_name(first, last)] = {
            "words": len(members), "mean": values.mean().item(),
            "std": values.std().item() if len(members) > 1 else 0.0,
            "min": values.min().item(), "max": values.max().item(),
        }
    return bands
