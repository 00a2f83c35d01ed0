"""Candidates decoded from the student and scored by BLEU, as a teacher-forcing batch.

The expected-BLEU dev objective (:mod:`l2t_fairseq.dev_measure.expected_bleu`) and the
sequence-level baselines (``sequence_risk``, ``softmax_margin``) decode
candidates with fairseq's own generator (no gradient, dropout off), score each
against its reference with :func:`l2t_fairseq.dev_measure.bleu.sentence_bleu`, and
re-score them under teacher forcing with :func:`sequence_scores`.
"""

from argparse import Namespace
from dataclasses import dataclass

import torch
from fairseq.data import data_utils

from l2t_fairseq.dev_measure.bleu import sentence_bleu
from l2t_fairseq.unroll.student import evaluation

CANDIDATE_SEARCHES = ("sample", "beam")


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
    ``q``); ``text(tokens, reference=False)`` turns tokens into the string BLEU sees
(:func:`l2t_fairseq.dev_measure.bleu.bleu_text`).
    """
    rows, sentence, bleu = [], [], []
    for i, nbest in enumerate(hypotheses):
        reference = text(sample["target"][i], reference=True)
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
