"""Sampled candidates -> smoothed, differentiable dev measure (paper section 3.3).

``M~(omega) = sum_(x,y) sum_k BLEU(y*_k, y) q_omega(y*_k | x)``: the candidates
``y*_k`` are decoded from the student (:mod:`l2t_fairseq.dev_measure.candidates`) and then
held fixed; ``q`` is the student's sequence probability renormalized over each
sentence's candidate set with sharpness ``alpha`` (as in minimum risk
training).  The gradient flows through the candidates' log-probabilities under
teacher forcing, never through the decoding.
"""

import torch

from l2t_fairseq.dev_measure.candidates import sequence_scores
from l2t_fairseq.unroll.hypergrad import leaves
from l2t_fairseq.unroll.student import evaluation, functional_log_probs


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


def chunk_sample(sample, rows, width, pad):
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
        """Rows of candidates in chunks of at most ``max_tokens`` padded target tokens, and each chunk's width (read
        from the device once, not once per row)."""
        lengths = self.lengths.tolist()
        chunks, chunk, width = [], [], 0
        for row in torch.argsort(self.lengths).tolist():
            length = lengths[row]
            if chunk and (len(chunk) + 1) * max(width, length) > max_tokens:
                chunks.append(chunk)
                chunk, width = [], 0
            chunk.append(row)
            width = max(width, length)
        chunks.append(chunk)
        # in batch order within a chunk: fairseq batches come sorted by decreasing source length,
        # which RNN encoders (pack_padded_sequence) require
        return [(torch.tensor(sorted(c), device=self.lengths.device), max(lengths[r] for r in c)) for c in chunks]

    def scores(self, params, chunk=None):
        """The candidates' scores, or those of one chunk ``(rows, width)``."""
        sample = self.candidates.sample
        if chunk is not None:
            sample = chunk_sample(sample, *chunk, self.pad)
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
        for chunk in self.chunks:
            scores[chunk[0]] = self.scores(params, chunk)
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
            for chunk in self.chunks:
                chunk_grads = torch.autograd.grad(
                    self.scores(params, chunk), tuple(params.values()), d_scores[chunk[0]], materialize_grads=True
                )
                for name, g in zip(params, chunk_grads):
                    grads[name] += g
        return value.detach(), grads
