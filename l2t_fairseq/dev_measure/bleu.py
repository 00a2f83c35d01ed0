"""BLEU as the teacher sees it: fairseq's target text, sacrebleu's statistics.

One function per measure: :func:`bleu_text` (the string BLEU reads),
:func:`sentence_bleu` (the per-candidate reward of the dev measure),
:func:`bleu_statistics` and :func:`bleu_from_statistics` (corpus BLEU whose
sufficient statistics can be summed over data-parallel workers).
"""

import torch
from fairseq import utils
from sacrebleu.metrics import BLEU

# tokenized BLEU (fairseq's text is already tokenized), smoothed, effective n-gram order
_SENTENCE_BLEU = BLEU(tokenize="none", effective_order=True)
_CORPUS_BLEU = BLEU(tokenize="none", effective_order=True)
# as fairseq's --eval-bleu: an <unk> of the reference never matches one of the hypothesis
REFERENCE_UNK, HYPOTHESIS_UNK = "UNKNOWNTOKENINREF", "UNKNOWNTOKENINHYP"


def bleu_text(dictionary, tokens, remove_bpe, reference=False):
    """What BLEU sees: the target string without padding or EOS, de-BPE'd (``--eval-bleu-remove-bpe``), its
    ``<unk>`` spelled apart in references and hypotheses as fairseq's ``--eval-bleu`` does."""
    return dictionary.string(
        utils.strip_pad(tokens, dictionary.pad()).int().cpu(), remove_bpe,
        unk_string=REFERENCE_UNK if reference else HYPOTHESIS_UNK,
    )


def is_segmented(dictionary):
    """Whether the dictionary holds subword pieces (subword-nmt's ``@@`` or sentencepiece's ``\u2581``)."""
    return any(word.endswith("@@") or word.startswith("\u2581") for word in dictionary.symbols)


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
