"""Sampled candidates -> smoothed, differentiable dev measure (paper section 3.3).

``M~(omega) = sum_(x,y) sum_k BLEU(y*_k, y) q_omega(y*_k | x)``: the candidates
``y*_k`` are decoded from the student (ancestral sampling or beam search, plus
the greedy output) and then held fixed; ``q`` is the student's sequence
probability renormalized over each sentence's candidate set with sharpness
``alpha`` (as in minimum risk training).  The gradient flows through the
candidates' log-probabilities under teacher forcing, never through the
decoding.  The baselines ``sequence_risk`` and ``softmax_margin`` use the same
candidates, BLEU and sequence scores.
"""

from argparse import Namespace
from dataclasses import dataclass

import torch
from fairseq import utils
from fairseq.data import data_utils
from sacrebleu.metrics import BLEU

from l2t_fairseq.hypergrad import leaves
from l2t_fairseq.student import evaluation, functional_log_probs

CANDIDATE_SEARCHES = ("sample", "beam")

# tokenized BLEU (fairseq's text is already tokenized), smoothed, effective n-gram order
_SENTENCE_BLEU = BLEU(tokenize="none", effective_order=True)
_CORPUS_BLEU = BLEU(tokenize="none", effective_order=True)


def bleu_text(dictionary, tokens, remove_bpe):
    """What BLEU sees: the target string without padding or EOS, de-BPE'd (``--eval-bleu-remove-bpe``)."""
    return dictionary.string(utils.strip_pad(tokens, dictionary.pad()).int().cpu(), remove_bpe)


def sentence_bleu(hypothesis, reference):
    """sacrebleu's smoothed sentence BLEU (``exp`` smoothing) in [0, 1]."""
    return _SENTENCE_BLEU.sentence_score(hypothesis, [reference]).score / 100


def bleu_statistics(hypotheses, references):
    """Corpus BLEU's sufficient statistics: n-gram matches and totals (n = 1..4), hypothesis and reference length.

    A float tensor, so that the statistics of several data-parallel workers can be summed.
    """
    if not hypotheses:
        return torch.zeros(10, dtype=torch.float64)
    score = _CORPUS_BLEU.corpus_score(hypotheses, [references])
    return torch.tensor([*score.counts, *score.totals, score.sys_len, score.ref_len], dtype=torch.float64)


def bleu_from_statistics(statistics):
    """Corpus BLEU in [0, 1] from (summed) :func:`bleu_statistics`; effective order, so a batch of short
    sentences does not score 0."""
    counts = [int(v) for v in statistics.tolist()]
    return BLEU.compute_bleu(
        counts[:4], counts[4:8], counts[8], counts[9], smooth_method=_CORPUS_BLEU.smooth_method,
        effective_order=True,
    ).score / 100


def corpus_bleu(hypotheses, references):
    """Corpus BLEU in [0, 1] of one worker's sentences."""
    return bleu_from_statistics(bleu_statistics(hypotheses, references))


def build_candidate_generator(task, model, search, count, max_len_a=1.2, max_len_b=10):
    """A fairseq SequenceGenerator returning ``count`` candidates per sentence.

    ``sample``: fairseq's sampling search draws ``count`` independent
    ancestral samples (with replacement at the first step, then one token per
    sample); ``beam``: the ``count``-best list of beam search.  Lengths are
    capped at ``max_len_a * |x| + max_len_b`` so an untrained student's
    samples stay short.  (SequenceGenerator switches the model to eval mode
    when it is built; the model's mode is restored.)
    """
    args = Namespace(beam=count, sampling=search == "sample", max_len_a=max_len_a, max_len_b=max_len_b)
    with evaluation(model):
        return task.build_generator([model], args)


def decode(task, generator, model, sample):
    """The generator's hypotheses for each sentence, as token tensors ending in EOS (dropout off)."""
    with evaluation(model):
        hypotheses = task.inference_step(generator, [model], sample)
    return [[hypothesis["tokens"] for hypothesis in nbest] for nbest in hypotheses]


@dataclass
class Candidates:
    """A teacher-forcing batch with one row per (sentence, unique candidate)."""

    sample: dict
    sentence: torch.Tensor  # row -> index of its source sentence in the original batch
    bleu: torch.Tensor  # sentence BLEU of each row's candidate against the reference, in [0, 1]
    num_sentences: int


def build_candidates(sample, hypotheses, text, pad, eos):
    """Deduplicates each sentence's candidates, scores them and collates them for teacher forcing.

    ``hypotheses[i]`` lists token tensors for sentence ``i`` of ``sample``
    (duplicates allowed; duplicates would count twice in the renormalized
    ``q``); ``text(tokens)`` turns tokens into the de-BPE'd string BLEU sees.
    """
    rows, sentence, bleu = [], [], []
    for i, nbest in enumerate(hypotheses):
        reference = text(sample["target"][i])
        seen = set()
        for tokens in nbest:
            tokens = tokens.cpu()
            key = tuple(tokens.tolist())
            if key in seen:
                continue
            seen.add(key)
            rows.append(tokens)
            sentence.append(i)
            bleu.append(sentence_bleu(text(tokens), reference))
    device = sample["target"].device
    sentence = torch.tensor(sentence, device=device)
    net_input = sample["net_input"]
    candidate_sample = {
        "net_input": {
            "src_tokens": net_input["src_tokens"][sentence],
            "src_lengths": net_input["src_lengths"][sentence],
            "prev_output_tokens": data_utils.collate_tokens(rows, pad, eos, move_eos_to_beginning=True).to(device),
        },
        "target": data_utils.collate_tokens(rows, pad, eos).to(device),
    }
    candidate_sample["ntokens"] = int(candidate_sample["target"].ne(pad).sum())
    return Candidates(candidate_sample, sentence, torch.tensor(bleu, device=device), len(hypotheses))


def sequence_scores(lprobs, target, pad, length_normalize=False):
    """``log p(y | x)`` of each row under teacher forcing (divided by ``|y|`` if ``length_normalize``)."""
    mask = target.ne(pad)
    token_lprobs = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask
    scores = token_lprobs.sum(-1)
    return scores / mask.sum(-1) if length_normalize else scores


def grouped_logsumexp(scores, sentence, num_sentences):
    """``log sum exp`` of ``scores`` over each sentence's candidates, one value per sentence."""
    maxima = scores.new_full((num_sentences,), float("-inf")).scatter_reduce(
        0, sentence, scores.detach(), reduce="amax"
    )
    sums = torch.zeros_like(maxima).index_add(0, sentence, (scores - maxima[sentence]).exp())
    return maxima + sums.log()


def grouped_log_softmax(scores, sentence, num_sentences):
    """``log softmax`` of ``scores`` within each sentence's candidate set."""
    return scores - grouped_logsumexp(scores, sentence, num_sentences)[sentence]


def candidate_weights(scores, candidates, alpha):
    """``q(y*_k | x) = softmax_k(alpha * score_k)`` over each sentence's candidates."""
    return grouped_log_softmax(alpha * scores, candidates.sentence, candidates.num_sentences).exp()


def expected_bleu(weights, candidates):
    """``M~`` of section 3.3, averaged over the batch's sentences (so in [0, 1])."""
    return (weights * candidates.bleu).sum() / candidates.num_sentences


def _chunk_sample(sample, rows, width, pad):
    """Some rows of a candidate batch, without the columns that are padding in all of them."""
    net_input = sample["net_input"]
    src_tokens = net_input["src_tokens"][rows]
    return {
        "net_input": {
            "src_tokens": src_tokens[:, src_tokens.ne(pad).any(0)],  # RNN encoders need the exact width
            "src_lengths": net_input["src_lengths"][rows],
            "prev_output_tokens": net_input["prev_output_tokens"][rows, :width],
        },
        "target": sample["target"][rows, :width],
    }


class DevExpectedBleu:
    """The teacher's dev objective ``J(omega) = -M~(omega)`` on fixed candidates, dropout off.

    ``loss(params)`` is differentiable in one graph over all candidates (what
    the tests differentiate through the whole unroll).  ``value_and_grad``
    gives the same value and gradient in two passes over chunks of at most
    ``max_tokens`` target tokens: the scores without a graph, ``dJ/dscores``
    (a vector, one entry per candidate), then one backward pass per chunk.
    Memory is that of one chunk, not of all candidates over the vocabulary.
    """

    def __init__(self, model, candidates, alpha, pad, max_tokens):
        self.model, self.candidates, self.alpha, self.pad = model, candidates, alpha, pad
        target = candidates.sample["target"]
        self.lengths = target.ne(pad).sum(-1)
        self.chunks = self._chunks(max_tokens)

    def _chunks(self, max_tokens):
        chunks, chunk, width = [], [], 0
        for row in torch.argsort(self.lengths).tolist():
            length = int(self.lengths[row])
            if chunk and (len(chunk) + 1) * max(width, length) > max_tokens:
                chunks.append(chunk)
                chunk, width = [], 0
            chunk.append(row)
            width = max(width, length)
        chunks.append(chunk)
        # in batch order within a chunk: fairseq batches come sorted by decreasing source length,
        # which RNN encoders (pack_padded_sequence) require
        return [torch.tensor(sorted(c), device=self.lengths.device) for c in chunks]

    def scores(self, params, rows=None):
        sample = self.candidates.sample
        if rows is not None:
            sample = _chunk_sample(sample, rows, int(self.lengths[rows].max()), self.pad)
        with evaluation(self.model):
            lprobs = functional_log_probs(self.model, params, sample)
        return sequence_scores(lprobs, sample["target"], self.pad)

    def from_scores(self, scores):
        return -expected_bleu(candidate_weights(scores, self.candidates, self.alpha), self.candidates)

    def loss(self, params):
        return self.from_scores(self.scores(params))

    @torch.no_grad()
    def chunked_scores(self, params):
        scores = torch.zeros_like(self.lengths, dtype=next(iter(params.values())).dtype)
        for rows in self.chunks:
            scores[rows] = self.scores(params, rows)
        return scores

    def value(self, params):
        """``J(params)``, without a graph."""
        return self.from_scores(self.chunked_scores(params))

    def value_and_grad(self, params):
        params = leaves(params)
        scores = self.chunked_scores(params)
        with torch.enable_grad():
            scores.requires_grad_()
            value = self.from_scores(scores)
            (d_scores,) = torch.autograd.grad(value, scores)
            grads = {name: torch.zeros_like(p) for name, p in params.items()}
            for rows in self.chunks:
                chunk_grads = torch.autograd.grad(
                    self.scores(params, rows), tuple(params.values()), d_scores[rows], materialize_grads=True
                )
                for name, g in zip(params, chunk_grads):
                    grads[name] += g
        return value.detach(), grads
