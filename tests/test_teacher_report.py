"""What the online teachers learned, against the null of a teacher stepped along random hypergradients."""

import numpy as np
import torch

from l2t_fairseq.benchmark.teacher_report import flag, from_initial, learned, null_spread, relative, spread

VOCAB = 60


class Words(list):
    def __getitem__(self, index):
        return f"w{index}"


def test_the_null_spreads_with_the_number_of_random_steps():
    frequency = torch.arange(VOCAB) % 7
    states = [[i / 10, 0.1, 0.2] for i in range(10)]
    none, few, many = (null_spread(steps, states, VOCAB, frequency, lr=0.03) for steps in (0, 2, 10))
    assert none < 1e-6 < few < many
    assert null_spread(10, states, VOCAB, frequency, lr=0.1) > many  # a faster teacher moves further
    assert null_spread(10, states, VOCAB, frequency, lr=0.03, seed=2) != many


def test_relative_coefficients_and_spread_leave_out_words_never_seen():
    frequency = torch.tensor([0, 3, 1, 0])
    phi = np.array([9.0, 1.0, 3.0, 9.0])
    assert relative(phi, frequency)[1:3].tolist() == [0.5, 1.5]
    assert spread(phi, frequency) == np.std([1.0, 3.0], ddof=1) / 2.0


def test_seeds_that_learned_the_same_agree_and_the_words_are_named():
    frequency = torch.arange(VOCAB, 0, -1)  # word 0 most frequent
    phi = np.linspace(0.5, 1.5, VOCAB)
    logs, phis = {}, {}
    for seed in ("1", "2"):
        records = [{"update": 10 * (i + 1), "state": [0.1 * i, 0.2, 0.3], "dev_expected_bleu": 0.1}
                   for i in range(3)]
        logs[seed], phis[seed] = records, [(records[-1], phi)]
    text = "\n".join(learned(logs, phis, {"1": "--teacher-lr 0.1"}, Words(range(VOCAB)), frequency))
    assert "seeds 1 and 2: 1.00" in text and "| `w59` |" in text and "| `w0` |" in text
    assert text.count("| 3 | 30 |") == 2  # three teacher steps each, the last Phi at update 30
    # against the initial coefficients (1 / ln 60 = 0.244 each): phi runs from 0.5 to 1.5, every word moved
    assert text.count(f"| 3 | 30 | {np.mean(phi) * np.log(VOCAB):.3f} | 100.0% |") == 2


def test_the_move_from_the_initial_coefficients_counts_the_words_seen():
    frequency = torch.tensor([0, 3, 1, 2, 5])
    phi = np.array([9.0, 0.5, 0.52, 0.6, 0.5])  # initial 0.5: word 3 moved by 20%, word 2 by 4%
    scale, moved = from_initial(phi, 0.5, frequency)
    assert scale == np.mean([1.0, 1.04, 1.2, 1.0]) and moved == 0.25


def test_a_flag_is_read_from_a_recorded_command():
    assert flag("DATA --teacher-lr 0.1 --lr 3e-3 --teacher-lr 0.2", "--teacher-lr", 0.03) == 0.2
    assert flag("DATA --lr 3e-3", "--teacher-lr", 0.03) == 0.03
