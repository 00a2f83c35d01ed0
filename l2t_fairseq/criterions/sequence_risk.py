"""Criterion ``sequence_risk``: minimum risk training (Shen et al. 2016), the paper's RL baseline."""

from dataclasses import dataclass, field

from fairseq.criterions import register_criterion

from l2t_fairseq.criterions.sequence_level import SequenceLevelConfig, SequenceLevelCriterion
from l2t_fairseq.dev_measure.expected_bleu import candidate_weights


@dataclass
class SequenceRiskConfig(SequenceLevelConfig):
    risk_alpha: float = field(
        default=1.0, metadata={"help": "sharpness of q(y*|x) ~ exp(alpha * length-normalized log p) per sentence"}
    )


@register_criterion("sequence_risk", dataclass=SequenceRiskConfig)
class SequenceRiskCriterion(SequenceLevelCriterion):
    """Expected cost ``sum_k q(y*_k|x) (1 - BLEU(y*_k, y))`` over the student's own candidates.

    ``q`` is a softmax over length-normalized sequence log-probabilities; it
    is ``1 - M~`` of the expected-BLEU objective, differentiated with respect
    to the student instead of the teacher.
    """

    length_normalize = True

    def __init__(self, task, candidates, candidate_search, token_nll_weight, risk_alpha):
        super().__init__(task, candidates, candidate_search, token_nll_weight)
        self.alpha = risk_alpha

    def sequence_loss(self, scores, reference_scores, candidates):
        weighted_cost = candidate_weights(scores, candidates, self.alpha) * (1 - candidates.bleu)
        return weighted_cost.new_zeros(candidates.num_sentences).index_add(0, candidates.sentence, weighted_cost)
