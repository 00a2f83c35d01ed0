"""The fixed token-level baselines a learned teacher must beat: the L2T-DLF loss at its initial coefficients
(``l2t_dlf_fixed``), token-level adaptive training (``token_adaptive``) and loss truncation (``loss_truncation``)."""

import math
from argparse import Namespace

import pytest
import torch
from conftest import l2t_flags, make_dictionary, synthetic_batch, tiny_student, train_in_process

from l2t_fairseq.criterions.loss_truncation import LossTruncationCriterion
from l2t_fairseq.criterions.token_adaptive import TokenAdaptiveCriterion, adaptive_weights
from l2t_fairseq.errors import UsageError
from l2t_fairseq.unroll.loss import log_probs


def counted_dictionary(counts):
    dictionary = make_dictionary(len(counts))
    for i, count in enumerate(counts):
        dictionary.count[dictionary.nspecial + i] = count
    return dictionary


def token_nll(model, sample, pad):
    """Each target token's negative log-likelihood (0 on padding), computed directly."""
    lprobs = log_probs(model(**sample["net_input"]))
    nll = -lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)
    return nll * sample["target"].ne(pad)


def test_the_adaptive_weights_are_the_papers_two_forms():
    # counts over the median count (10): 10, 5, 1, 0.5, 0.1
    counts = [1, 1, 1, 1, 100, 50, 10, 5, 1]
    exp = adaptive_weights(counts, 4, "exp", a=math.e - 1, t=1.0)
    assert exp[:4].tolist() == [1.0] * 4  # fairseq's special symbols
    largest = math.exp(-0.1)  # the rarest word's exp(-T c)
    for weight, c in zip(exp[4:].tolist(), [10, 5, 1, 0.5, 0.1]):
        assert weight == pytest.approx(1 + (math.e - 1) * math.exp(-c) / largest)
    assert exp[-1] == pytest.approx(math.e) and exp[4] == pytest.approx(1.0, abs=1e-3)  # rarest e, commonest ~1
    chi2 = adaptive_weights(counts, 4, "chi2", a=2.0, t=0.5)
    f = [c**2 * math.exp(-0.5 * c) for c in (10, 5, 1, 0.5, 0.1)]  # largest near c = 2 / T = 4: the count of 50
    assert chi2[4:].tolist() == pytest.approx([1 + 2.0 * v / max(f) for v in f])
    assert int(chi2[4:].argmax()) == 1 and chi2.min() >= 1


def test_token_adaptive_weights_each_target_tokens_log_likelihood():
    dictionary = counted_dictionary([400, 200, 100, 50, 20, 10, 5, 2, 1])
    task = Namespace(target_dictionary=dictionary)
    criterion = TokenAdaptiveCriterion(task, False, "exp", 1.5, 2.0).double()
    model = tiny_student("transformer", dictionary, dropout=0.0)
    sample = synthetic_batch(dictionary, sentences=4)
    loss, sample_size, _ = criterion(model, sample)
    weights = adaptive_weights(dictionary.count, dictionary.nspecial, "exp", 1.5, 2.0)
    expected = (weights[sample["target"]] * token_nll(model, sample, dictionary.pad())).sum()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6) and sample_size == sample["ntokens"]
    # above cross-entropy: every weight is at least 1, and the batch holds words rarer than the commonest
    assert float(loss) > float(token_nll(model, sample, dictionary.pad()).sum())
    with pytest.raises(UsageError, match="--adaptive-t"):
        TokenAdaptiveCriterion(task, False, "exp", 1.5, 0.0)


def test_loss_truncation_is_cross_entropy_until_its_window_fills_then_drops_the_top_fraction():
    dictionary = make_dictionary()
    task = Namespace(target_dictionary=dictionary)
    criterion = LossTruncationCriterion(task, False, truncation_fraction=0.25, truncation_window=8).double()
    torch.manual_seed(0)  # the student's initial weights
    model = tiny_student("lstm", dictionary, dropout=0.0)
    pad = dictionary.pad()
    seen, dropped = [], 0
    for seed in range(3):  # 4 sentences a batch: the window of 8 is full after the second
        sample = synthetic_batch(dictionary, sentences=4, seed=seed)
        nll = token_nll(model, sample, pad)
        sentence = nll.sum(-1) / sample["target"].ne(pad).sum(-1)
        seen += sentence.tolist()
        loss, _, _ = criterion(model, sample)
        if len(seen) < 8:  # the hot start: plain cross-entropy
            assert float(loss) == pytest.approx(float(nll.sum()), rel=1e-6)  # fairseq normalizes in fp32
            continue
        cutoff = torch.quantile(torch.tensor(seen[-8:], dtype=torch.float64), 0.75)
        kept = sentence <= cutoff
        dropped += 4 - int(kept.sum())
        assert float(loss) == pytest.approx(float(nll[kept].sum()), rel=1e-6)  # fairseq normalizes in fp32
    assert dropped > 0  # the batches after the hot start lost some of their sentences
    assert len(seen) == 12 and criterion.seen == 12
    # validation: cross-entropy, the window left alone
    criterion.eval()
    sample = synthetic_batch(dictionary, sentences=4, seed=7)
    assert float(criterion(model, sample)[0]) == pytest.approx(float(token_nll(model, sample, pad).sum()))
    assert criterion.seen == 12
    with pytest.raises(UsageError, match="--truncation-fraction"):
        LossTruncationCriterion(task, False, truncation_fraction=1.0, truncation_window=8)


def test_the_fixed_row_trains_on_the_loss_at_its_initial_coefficients(toy_data, tmp_path, monkeypatch):
    """``l2t_dlf_fixed``: the benchmark row's flags; every coefficient stays at --phi-init (1 / ln |V|) through
    every refresh, whatever the state."""
    from fairseq.data import Dictionary

    from l2t_fairseq import teacher_log
    from l2t_fairseq.benchmark.presets import ROWS, BenchmarkRows
    from l2t_fairseq.teacher.model import default_phi_init

    flags = BenchmarkRows(Namespace(l2t_flags="--teacher-interval 2 --unroll-steps 1")).flags("l2t_dlf_fixed")
    assert flags[-4:] == ["--teacher-interval", "2", "--unroll-steps", "1"]  # the L2T rows' flags, theirs too
    assert "--teacher-path" not in flags
    args = [f for f in l2t_flags(toy_data, tmp_path, "--max-update", "6") if f not in ("--task", "l2t_translation",
                                                                                     "--criterion", "l2t_dlf")]
    train_in_process(monkeypatch, *args, *flags)
    assert ROWS["l2t_dlf_fixed"] == ["--task", "l2t_translation", "--criterion", "l2t_dlf", "--freeze-teacher"]
    refreshes = teacher_log.coefficients(str(tmp_path / teacher_log.TEACHER_LOG))
    vocabulary = len(Dictionary.load(str(toy_data / "dict.tgt.txt")))
    assert len(refreshes) >= 2
    for _, phi in refreshes:  # float16 rows
        assert phi.min() == phi.max() == pytest.approx(default_phi_init(vocabulary), rel=1e-3)
