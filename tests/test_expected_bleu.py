"""The smoothed dev measure M~ (paper section 3.3): BLEU, candidates, weights and gradient."""

import math
from argparse import Namespace

import fairseq.utils
import pytest
import torch
from conftest import dictionary_text, synthetic_batch, synthetic_candidates, tiny_student

from l2t_fairseq.dev_measure.bleu import bleu_text, corpus_bleu, is_segmented, sentence_bleu
from l2t_fairseq.dev_measure.candidates import build_candidate_generator, build_candidates, decode, sequence_scores
from l2t_fairseq.dev_measure.expected_bleu import DevExpectedBleu, candidate_weights, expected_bleu, grouped_log_softmax
from l2t_fairseq.unroll.loss import log_probs
from l2t_fairseq.unroll.student import trainable_params


def test_sentence_bleu_known_values():
    assert sentence_bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # precisions 3/4, 2/3, 1/2 and, with exp smoothing, 1/(2 * 1) for the missing 4-gram; no brevity penalty
    assert sentence_bleu("a b c d", "a b c e") == pytest.approx((3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25, abs=1e-6)
    # half as long: brevity penalty exp(1 - 4/2); effective order 2 (it has no 3- or 4-grams)
    assert sentence_bleu("a b", "a b c d") == pytest.approx(math.exp(1 - 2), abs=1e-6)
    assert sentence_bleu("x y z", "a b c d") == pytest.approx(0.0, abs=1e-2)
    assert corpus_bleu(["a b c d", "x y"], ["a b c d", "x y"]) == pytest.approx(1.0)


def test_unknown_words_never_match(dictionary):
    """As fairseq's --eval-bleu: an <unk> in the reference is not a match for an <unk> in the hypothesis."""
    tokens = torch.tensor([dictionary.unk(), dictionary.index("w1"), dictionary.index("w2"), dictionary.index("w3"),
                           dictionary.eos()])
    reference = bleu_text(dictionary, tokens, None, reference=True)
    hypothesis = bleu_text(dictionary, tokens, None)
    assert reference.split()[1:] == hypothesis.split()[1:] == ["w1", "w2", "w3"]
    assert sentence_bleu(hypothesis, reference) < 0.9
    assert sentence_bleu(bleu_text(dictionary, tokens[1:], None), bleu_text(dictionary, tokens[1:], None, True)) == (
        pytest.approx(1.0)
    )


def test_segmented_dictionaries_are_recognized(dictionary):
    assert not is_segmented(dictionary)
    dictionary.add_symbol("wo@@")
    assert is_segmented(dictionary)


def test_grouped_log_softmax_is_a_softmax_per_sentence():
    scores = torch.tensor([0.3, -1.0, 2.0, 5.0, 4.0, -7.0], dtype=torch.float64)
    sentence = torch.tensor([0, 0, 0, 1, 1, 2])
    grouped = grouped_log_softmax(scores, sentence, 3)
    expected = torch.cat([scores[:3].log_softmax(0), scores[3:5].log_softmax(0), scores[5:].log_softmax(0)])
    torch.testing.assert_close(grouped, expected)


def test_candidates_are_deduplicated_and_aligned_with_their_source(dictionary):
    sample = synthetic_batch(dictionary, sentences=3, seed=4)
    reference = sample["target"][1][sample["target"][1].ne(dictionary.pad())]
    hypotheses = [[sample["target"][0]], [reference, reference.clone(), reference[1:]], [reference]]
    text = dictionary_text(dictionary)
    candidates = build_candidates(sample, hypotheses, text, dictionary.pad(), dictionary.eos())
    assert candidates.sentence.tolist() == [0, 1, 1, 2]  # the duplicate of sentence 1 is gone
    assert candidates.bleu[:2].tolist() == [pytest.approx(1.0), pytest.approx(1.0)]  # references score 1
    for row, i in enumerate(candidates.sentence.tolist()):
        assert torch.equal(candidates.sample["net_input"]["src_tokens"][row], sample["net_input"]["src_tokens"][i])
    target, prev = candidates.sample["target"], candidates.sample["net_input"]["prev_output_tokens"]
    assert prev[:, 0].eq(dictionary.eos()).all() and torch.equal(prev[2, 1:3], target[2, :2])
    assert candidates.sample["ntokens"] == int(target.ne(dictionary.pad()).sum())


def test_sequence_scores_sum_token_log_probs(dictionary):
    model = tiny_student("transformer", dictionary, dropout=0.0).eval()
    sample = synthetic_batch(dictionary, sentences=3, seed=5)
    lprobs = log_probs(model(**sample["net_input"]))
    target, pad = sample["target"], dictionary.pad()
    scores = sequence_scores(lprobs, target, pad)
    nll = torch.nn.functional.nll_loss(lprobs.transpose(1, 2), target, ignore_index=pad, reduction="none")
    torch.testing.assert_close(scores, -nll.sum(-1))
    lengths = target.ne(pad).sum(-1)
    torch.testing.assert_close(sequence_scores(lprobs, target, pad, length_normalize=True), scores / lengths)


def expected_bleu_setting(dictionary):
    torch.manual_seed(0)
    model = tiny_student("transformer", dictionary, dropout=0.0)
    candidates = synthetic_candidates(dictionary, synthetic_batch(dictionary, sentences=4, seed=7), per_sentence=5)
    params = {name: p.detach().clone() for name, p in trainable_params(model).items()}
    return model, candidates, params


def test_expected_bleu_gradient_matches_finite_differences(dictionary, monkeypatch):
    # keep fairseq's encoder-decoder attention softmax in fp64 (see test_hypergrad)
    monkeypatch.setattr(fairseq.utils, "softmax", lambda x, dim, onnx_trace=False: torch.softmax(x, dim=dim))
    model, candidates, params = expected_bleu_setting(dictionary)
    objective = DevExpectedBleu(model, candidates, alpha=0.7, pad=dictionary.pad(), max_tokens=16)
    assert len(objective.chunks) > 2
    value, chunked = objective.value_and_grad(params)
    leaves = {name: p.clone().requires_grad_() for name, p in params.items()}
    whole = objective.loss(leaves)
    grads = torch.autograd.grad(whole, tuple(leaves.values()))
    torch.testing.assert_close(value, whole.detach())
    for name, g in zip(params, grads):  # two passes over chunks == one graph over all candidates
        torch.testing.assert_close(chunked[name], g, rtol=1e-10, atol=1e-14, msg=name)

    generator = torch.Generator().manual_seed(3)
    eps = 1e-6
    for _ in range(3):
        direction = {name: torch.randn(p.shape, generator=generator, dtype=p.dtype) for name, p in params.items()}

        def J(sign, direction=direction):
            with torch.no_grad():
                return objective.loss({n: p + sign * eps * direction[n] for n, p in params.items()}).item()

        numeric = (J(+1) - J(-1)) / (2 * eps)
        analytic = sum((g * direction[n]).sum().item() for n, g in zip(params, grads))
        assert abs(analytic) > 1e-8
        assert analytic == pytest.approx(numeric, rel=1e-6)


def test_gradient_ascent_on_expected_bleu_moves_weight_to_better_candidates(dictionary):
    model, candidates, params = expected_bleu_setting(dictionary)
    pad = dictionary.pad()

    def weights(current):
        lprobs = torch.func.functional_call(model.eval(), current, kwargs=candidates.sample["net_input"])
        scores = sequence_scores(log_probs(lprobs), candidates.sample["target"], pad)
        return candidate_weights(scores, candidates, alpha=1.0)

    leaves = {name: p.clone().requires_grad_() for name, p in params.items()}
    before = weights(leaves)
    measure = expected_bleu(before, candidates)
    grads = torch.autograd.grad(measure, tuple(leaves.values()))
    with torch.no_grad():
        after = weights({n: p + 0.5 * g for (n, p), g in zip(params.items(), grads)})

    assert expected_bleu(after, candidates) > measure
    bleu = candidates.bleu
    assert bleu.max() == pytest.approx(1.0) and bleu.min() < 0.5, "the candidates must differ in BLEU"
    change = (after - before.detach()) * (bleu - bleu.mean())
    assert change.sum() > 0, "weight did not move towards higher-BLEU candidates"
    references = bleu.eq(bleu.max())  # one step of shared parameters need not help every sentence, but in total:
    assert after[references].sum() > before.detach()[references].sum(), "the references (BLEU 1) lost weight"


@pytest.mark.parametrize("search", ["sample", "beam"])
def test_decoded_candidates_come_from_fairseq_generators(dictionary, search):
    from fairseq.tasks.translation import TranslationTask

    model = tiny_student("transformer", dictionary, dropout=0.0).float().train()
    task = TranslationTask(Namespace(left_pad_source=True, left_pad_target=False), dictionary, dictionary)
    sample = synthetic_batch(dictionary, sentences=3, seed=8)
    generator = build_candidate_generator(task, model, search, count=4)
    torch.manual_seed(0)
    hypotheses = decode(task, generator, model, sample)
    assert [len(nbest) for nbest in hypotheses] == [4, 4, 4]
    max_length = int(1.2 * sample["net_input"]["src_tokens"].size(1) + 10) + 1  # fairseq: a * |x| + b, then EOS
    for nbest in hypotheses:
        for tokens in nbest:
            assert tokens[-1] == dictionary.eos() and len(tokens) <= max_length
    assert model.training, "decode must restore the student's training mode"
