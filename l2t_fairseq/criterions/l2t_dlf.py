"""Criterion ``l2t_dlf``: the dynamic loss that the teacher sets (paper section 4.2)."""

import math
from dataclasses import dataclass

from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from omegaconf import II

from l2t_fairseq.errors import UsageError
from l2t_fairseq.loss import dynamic_loss, log_probs


@dataclass
class L2TDLFCriterionConfig(FairseqDataclass):
    sentence_avg: bool = II("optimization.sentence_avg")


@register_criterion("l2t_dlf", dataclass=L2TDLFCriterionConfig)
class L2TDLFCriterion(FairseqCriterion):
    """Trains the student on the loss with the task's current coefficients ``Phi_t``.

    ``Phi_t`` enters as a constant: the student's gradient flows only through
    ``log p``, and the teacher is trained by the task's hypergradient alone.
    """

    def __init__(self, task, sentence_avg):
        super().__init__(task)
        if not hasattr(task, "teacher"):
            raise UsageError(
                "--criterion l2t_dlf needs --task l2t_translation (it takes its coefficients from that task's teacher)"
            )
        self.sentence_avg = sentence_avg

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        lprobs = log_probs(net_output)
        phi = self.task.phi().to(lprobs.device)
        loss, nll_loss = dynamic_loss(
            lprobs, model.get_targets(sample, net_output), phi, self.padding_idx, self.task.coefficient_mean
        )
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """As ``label_smoothed_cross_entropy``: ``loss`` and ``nll_loss`` in base 2, ``ppl`` from ``nll_loss``."""
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        nll_loss_sum = sum(log.get("nll_loss", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll_loss_sum / ntokens / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
