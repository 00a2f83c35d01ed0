"""The sequence-level baselines: sequence_risk (MRT) and softmax_margin."""

from argparse import Namespace

import pytest
import torch
from conftest import PLUGIN, run, synthetic_batch, tiny_student, train_in_process

from l2t_fairseq.criterions.sequence_risk import SequenceRiskCriterion
from l2t_fairseq.criterions.softmax_margin import SoftmaxMarginCriterion
from l2t_fairseq.unroll.loss import log_probs


def translation_task(dictionary):
    from fairseq.tasks.translation import TranslationTask

    cfg = Namespace(left_pad_source=True, left_pad_target=False, eval_bleu_remove_bpe=None)
    return TranslationTask(cfg, dictionary, dictionary)


def scores_of(model, sample, pad):
    """Sequence log-probabilities of each target row, computed directly."""
    lprobs = log_probs(model(**sample["net_input"]))
    token = lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)
    mask = sample["target"].ne(pad)
    return (token * mask).sum(-1), mask.sum(-1)


def decoded(criterion_class, dictionary, *args, **kwargs):
    """A tiny student, the criterion, a batch of 3 sentences and the candidates the criterion decodes for it."""
    torch.manual_seed(0)
    model = tiny_student("transformer", dictionary, dropout=0.0).eval()
    criterion = criterion_class(translation_task(dictionary), *args, **kwargs)
    sample = synthetic_batch(dictionary, sentences=3, seed=1)
    return model, criterion, sample, criterion.candidates(model, sample)


def test_sequence_risk_is_the_expected_cost_under_length_normalized_softmax(dictionary):
    model, criterion, sample, candidates = decoded(SequenceRiskCriterion, dictionary, 4, "sample", 0.0, risk_alpha=2.0)
    scores, lengths = scores_of(model, candidates.sample, dictionary.pad())
    risk = criterion.sequence_loss(scores / lengths, None, candidates)
    for i in range(3):
        rows = candidates.sentence.eq(i)
        q = torch.softmax(2.0 * scores[rows] / lengths[rows], 0)
        torch.testing.assert_close(risk[i], (q * (1 - candidates.bleu[rows])).sum())
    loss, sample_size, log = criterion(model, sample)
    torch.testing.assert_close(loss, log["sequence_loss"])  # token-nll-weight 0: the risk alone
    assert sample_size == 3 and 0 <= log["candidate_bleu"] <= log["ncandidates"]


def test_softmax_margin_is_a_cost_augmented_log_loss_with_the_reference_in_the_set(dictionary):
    model, criterion, sample, candidates = decoded(SoftmaxMarginCriterion, dictionary, 3, "beam", 0.25, cost_scale=5.0)
    reference_scores, _ = scores_of(model, sample, dictionary.pad())
    scores, _ = scores_of(model, candidates.sample, dictionary.pad())
    margin = criterion.sequence_loss(scores, reference_scores, candidates)
    for i in range(3):
        rows = candidates.sentence.eq(i)
        assert candidates.bleu[rows].max() == pytest.approx(1.0), "the reference must be a candidate"
        expected = torch.logsumexp(scores[rows] + 5.0 * (1 - candidates.bleu[rows]), 0) - reference_scores[i]
        torch.testing.assert_close(margin[i], expected)
        assert margin[i] >= 0  # the reference's own term is in the log-sum-exp
    loss, _, log = criterion(model, sample)
    torch.testing.assert_close(loss, 0.25 * log["nll_loss"] + 0.75 * log["sequence_loss"])


@pytest.mark.parametrize("criterion", ["sequence_risk", "softmax_margin"])
def test_baselines_train_with_fairseq(toy_data, tmp_path, criterion):
    result = run(
        "fairseq-train", toy_data, "--user-dir", PLUGIN, "--task", "translation", "--criterion", criterion,
        "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "2e-3", "--max-tokens", "1000",
        "--max-update", "8", "--save-dir", tmp_path, "--no-epoch-checkpoints", "--log-format", "simple",
        "--log-interval", "4", "--cpu", "--seed", "1", "--candidates", "2",
    )
    assert "done training" in result.stdout
    assert "candidate_bleu" in result.stdout and "sequence_loss" in result.stdout


def test_baselines_refuse_bad_flags(toy_data, tmp_path, monkeypatch):
    for flags, message in (
        (["--criterion", "sequence_risk", "--candidates", "0"], "--candidates must be at least 1, got 0"),
        (["--criterion", "softmax_margin", "--token-nll-weight", "1.5"],
         "--token-nll-weight must be in [0, 1], got 1.5"),
    ):
        with pytest.raises(SystemExit) as stopped:
            train_in_process(
                monkeypatch, toy_data, "--user-dir", PLUGIN, "--task", "translation", *flags,
                "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1000",
                "--max-update", "1", "--save-dir", tmp_path, "--cpu",
            )
        assert str(stopped.value.code) == f"l2t_fairseq: error: {message}"
