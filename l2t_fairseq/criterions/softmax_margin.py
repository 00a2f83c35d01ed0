"""Criterion ``softmax_margin``: sequence-level, cost-augmented softmax (Edunov et al. 2018)."""

from dataclasses import dataclass, field

from fairseq.criterions import register_criterion

from l2t_fairseq.criterions.sequence_level import SequenceLevelConfig, SequenceLevelCriterion
from l2t_fairseq.dev_measure.expected_bleu import grouped_logsumexp


@dataclass
class SoftmaxMarginConfig(SequenceLevelConfig):
    cost_scale: float = field(
        default=10.0, metadata={"help": "cost of a candidate in nats: cost-scale * (1 - sentence BLEU)"}
    )


@register_criterion("softmax_margin", dataclass=SoftmaxMarginConfig)
class SoftmaxMarginCriterion(SequenceLevelCriterion):
    """``-s(y) + log sum_{u in U(x) + {y}} exp(s(u) + cost(u, y))`` with ``s = log p(u | x)``.

    Candidates that score well under the student but badly under BLEU get the
    largest push down; the reference (cost 0) is always in the set.
    """

    length_normalize = False
    include_reference = True

    def __init__(self, task, candidates, candidate_search, token_nll_weight, cost_scale):
        super().__init__(task, candidates, candidate_search, token_nll_weight)
        self.cost_scale = cost_scale

    def sequence_loss(self, scores, reference_scores, candidates):
        augmented = scores + self.cost_scale * (1 - candidates.bleu)
        return grouped_logsumexp(augmented, candidates.sentence, candidates.num_sentences) - reference_scores
