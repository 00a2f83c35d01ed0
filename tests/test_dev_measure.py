"""The dev measure on its own: greedy BLEU and the expected-BLEU objective behind a decoder and a dev stream."""

from types import SimpleNamespace

import pytest
import torch
from conftest import synthetic_batch, tiny_student

from l2t_fairseq.dev_measure.measure import DevMeasure

CFG = SimpleNamespace(max_tokens=None, teacher_dev_max_tokens=1024, teacher_alpha=0.5)


class Decoder:
    """Outputs the targets themselves (greedy) or the targets twice (candidates), and counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, sample, kind):
        self.calls.append(kind)
        copies = 1 if kind == "greedy" else 2
        return [[t[t.ne(1)] for _ in range(copies)] for t in sample["target"]]


class Stream:
    def __init__(self, batches):
        self.batches, self.drawn = batches, 0

    def next(self, model, device):
        self.drawn += 1
        return self.batches.pop(0) if self.batches else None

    def state_dict(self):
        return {"drawn": self.drawn}

    def load_state_dict(self, state):
        self.drawn = state["drawn"]


def test_greedy_bleu_of_perfect_outputs_is_one_and_no_batch_adds_nothing(dictionary):
    sample = synthetic_batch(dictionary, sentences=3, seed=1)
    measure = DevMeasure(CFG, dictionary, None, Decoder(), Stream([]), torch.device("cpu"))
    bleu, greedy = measure.greedy_bleu(None, sample)
    assert bleu == pytest.approx(1.0) and len(greedy) == 3
    assert measure.greedy_bleu(None, None) == (0.0, [])


def test_the_objective_scores_each_sentences_candidates_and_the_heldout_batch_is_always_drawn(dictionary):
    model = tiny_student("transformer", dictionary, dropout=0.0)
    decoder, stream = Decoder(), Stream([synthetic_batch(dictionary, seed=s) for s in (2, 3)])
    measure = DevMeasure(CFG, dictionary, None, decoder, stream, torch.device("cpu"))
    objective = measure.objective(model, synthetic_batch(dictionary, seed=1), seed=5)
    assert decoder.calls == ["candidates", "greedy"]
    assert objective.candidates.num_sentences == 3 and objective.candidates.bleu.max() == 1.0
    assert measure.heldout_objective(model, seed=5, measured=False) is None and stream.drawn == 1
    assert measure.heldout_objective(model, seed=5, measured=True) is not None and stream.drawn == 2
    assert measure.heldout_objective(model, seed=5, measured=True) is None  # the stream has no batch left
    assert measure.state_dict() == {"dev_batches": {"drawn": 3}}
