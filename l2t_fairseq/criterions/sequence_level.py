"""What the sequence-level baselines share: candidates decoded from the student, scored by BLEU.

``sequence_risk`` and ``softmax_margin`` (the paper's Table 3 baselines) train
on candidates decoded from the student at every step with the candidate, BLEU
and sequence-score code of the expected-BLEU objective
(:mod:`l2t_fairseq.dev_measure.candidates`).  As in Edunov et al. (2018), the sequence
loss is mixed with token-level NLL on the reference:
``loss = w * NLL(y) + (1 - w) * sequence loss``, summed over sentences.
"""

import math
from dataclasses import dataclass, field

from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from l2t_fairseq.dev_measure.bleu import bleu_text
from l2t_fairseq.dev_measure.candidates import (
    CANDIDATE_SEARCHES,
    build_candidate_generator,
    build_candidates,
    decode,
    sequence_scores,
)
from l2t_fairseq.errors import UsageError
from l2t_fairseq.unroll.loss import log_probs


@dataclass
class SequenceLevelConfig(FairseqDataclass):
    candidates: int = field(default=4, metadata={"help": "candidates decoded from the student per training sentence"})
    candidate_search: ChoiceEnum(CANDIDATE_SEARCHES) = field(
        default="sample", metadata={"help": "how the candidates are decoded: ancestral sampling or beam search"}
    )
    token_nll_weight: float = field(
        default=0.3, metadata={"help": "w in w * token NLL + (1 - w) * sequence loss (Edunov et al. 2018)"}
    )


def sentence_logging_output(loss, nll, sample, **more):
    """The logging output of a loss summed over a batch's sentences (its sample size), with the reference's NLL,
    as ``log_loss_and_nll`` reduces it, and the criterion's own sums."""
    nsentences = sample["target"].size(0)
    return {"loss": loss.data, "nll_loss": nll.data, **more, "ntokens": sample["ntokens"], "nsentences": nsentences,
            "sample_size": nsentences}


def log_loss_and_nll(logging_outputs):
    """Logs ``loss`` per sentence and ``nll_loss`` per token in base 2 (``ppl`` from it), as fairseq logs them;
    returns ``total(key)``, the sum of a key over the logging outputs, for the criterion's own metrics."""

    def total(key):
        return sum(log.get(key, 0) for log in logging_outputs)

    sentences, ntokens = total("nsentences"), total("ntokens")
    metrics.log_scalar("loss", total("loss") / sentences / math.log(2), sentences, round=3)
    metrics.log_scalar("nll_loss", total("nll_loss") / ntokens / math.log(2), ntokens, round=3)
    metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
    return total


class SequenceLevelCriterion(FairseqCriterion):
    """Decodes candidates (no gradient, dropout off), then scores them with the training model."""

    include_reference = False  # whether the reference joins each sentence's candidate set
    length_normalize = False  # whether sequence scores are divided by the candidate's length

    def __init__(self, task, candidates, candidate_search, token_nll_weight):
        super().__init__(task)
        if candidates < 1:
            raise UsageError(f"--candidates must be at least 1, got {candidates}")
        if not 0 <= token_nll_weight <= 1:
            raise UsageError(f"--token-nll-weight must be in [0, 1], got {token_nll_weight}")
        self.num_candidates = candidates
        self.candidate_search = candidate_search
        self.token_nll_weight = token_nll_weight
        self.remove_bpe = getattr(task.cfg, "eval_bleu_remove_bpe", None)

    def text(self, tokens, reference=False):
        return bleu_text(self.task.target_dictionary, tokens, self.remove_bpe, reference)

    def candidates(self, model, sample):
        # built per call (cheap): a generator kept as an attribute would be a submodule, the model saved twice
        generator = build_candidate_generator(self.task, model, self.candidate_search, self.num_candidates)
        hypotheses = decode(self.task, generator, model, sample)
        if self.include_reference:
            references = [utils.strip_pad(t, self.padding_idx) for t in sample["target"]]
            hypotheses = [nbest + [reference] for nbest, reference in zip(hypotheses, references)]
        return build_candidates(sample, hypotheses, self.text, self.padding_idx, self.task.target_dictionary.eos())

    def sequence_loss(self, scores, reference_scores, candidates):
        """Per-sentence sequence loss from the candidates' sequence scores; subclasses define it."""
        raise NotImplementedError

    def forward(self, model, sample, reduce=True):
        candidates = self.candidates(model, sample)
        reference_scores = sequence_scores(log_probs(model(**sample["net_input"])), sample["target"], self.padding_idx)
        lprobs = log_probs(model(**candidates.sample["net_input"]))
        scores = sequence_scores(lprobs, candidates.sample["target"], self.padding_idx, self.length_normalize)
        nll = -reference_scores.sum()
        seq_loss = self.sequence_loss(scores, reference_scores, candidates).sum()
        loss = self.token_nll_weight * nll + (1 - self.token_nll_weight) * seq_loss
        logging_output = sentence_logging_output(loss, nll, sample, sequence_loss=seq_loss.data,
                                                 candidate_bleu=candidates.bleu.sum().data,
                                                 ncandidates=len(candidates.bleu))
        return loss, logging_output["sample_size"], logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = log_loss_and_nll(logging_outputs)
        sentences = total("nsentences")
        metrics.log_scalar("sequence_loss", total("sequence_loss") / sentences, sentences, round=4)
        metrics.log_scalar("candidate_bleu", total("candidate_bleu") / max(total("ncandidates"), 1), round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True

