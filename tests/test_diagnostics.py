"""What the teacher learned, by target-word frequency."""

import torch

from l2t_fairseq.diagnostics import frequency_ranks, phi_bands, target_frequency


def test_target_frequency_counts_every_token():
    dataset = [torch.tensor([4, 5, 5, 2]), torch.tensor([5, 2])]
    assert target_frequency(dataset, 7).tolist() == [0, 0, 2, 0, 1, 3, 0]


def test_bands_follow_frequency_rank_and_leave_out_unseen_words():
    vocab = 1205
    frequency = torch.zeros(vocab, dtype=torch.long)
    frequency[5:1205] = torch.arange(1200, 0, -1)  # word 5 most frequent, 1,200 words seen
    frequency[[3, 4]] = 0  # never a target: no band
    phi = torch.zeros(vocab)
    phi[5:105], phi[105:1005], phi[1005:1205] = 3.0, torch.linspace(1, 2, 900), 0.5
    phi[3] = 100.0
    assert frequency_ranks(frequency)[:3].tolist() == [5, 6, 7]
    bands = phi_bands(phi, frequency)
    assert list(bands) == ["1-100", "101-1000", "1001-"]
    assert bands["1-100"] == {"words": 100, "mean": 3.0, "std": 0.0, "min": 3.0, "max": 3.0}
    middle = bands["101-1000"]
    assert middle["words"] == 900 and abs(middle["mean"] - 1.5) < 1e-6
    assert abs(middle["min"] - 1.0) < 1e-6 and abs(middle["max"] - 2.0) < 1e-6
    assert bands["1001-"]["words"] == 200 and bands["1001-"]["max"] == 0.5
