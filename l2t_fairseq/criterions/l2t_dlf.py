"""Criterion ``l2t_dlf``: the dynamic loss that the teacher sets (paper section 4.2)."""

import math
from dataclasses import dataclass, field

from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from l2t_fairseq.errors import UsageError
from l2t_fairseq.unroll.loss import LOSS_SCALES, PHI_NORMALIZATIONS, StudentLoss, log_probs


@dataclass
class L2TDLFCriterionConfig(FairseqDataclass):
    phi_normalization: ChoiceEnum(PHI_NORMALIZATIONS) = field(
        default="token_mean",
        metadata={"help": "token_mean: rescale each batch's coefficients to their initial mean (--phi-init, by "
                  "default 1/ln|V|), so the teacher sets only the words' relative weights; none: use them as they are"},
    )
    loss_scale: ChoiceEnum(LOSS_SCALES) = field(
        default="cross_entropy",
        metadata={"help": "cross_entropy: (4/phi-init) * (1/2 - sigmoid(Phi log p)), whose gradient at the default "
                  "initial coefficients 1/ln|V| is 0.79-1 times cross-entropy's, so a learning rate tuned for "
                  "cross-entropy fits (plain SGD); paper: -sigmoid(Phi log p), about 1/(4 ln|V|) of it"},
    )
    nll_weight: float = field(
        default=0.0,
        metadata={"help": "lambda: the student's loss is lambda * NLL + (1 - lambda) * l_Phi (0: the paper's loss)"},
    )
    sentence_avg: bool = II("optimization.sentence_avg")


@register_criterion("l2t_dlf", dataclass=L2TDLFCriterionConfig)
class L2TDLFCriterion(FairseqCriterion):
    """Trains the student on the loss with the teacher's current coefficients ``Phi_t``.

    ``Phi_t`` enters as a constant: the student's gradient flows only through
    ``log p``, and the teacher is trained by the hypergradient alone.  The
    teacher's unroll replays exactly this loss (:attr:`loss`, :meth:`sample_size`).
    The coefficients come from the task (:meth:`set_coefficients`); the
    criterion never reads the task.
    """

    def __init__(self, task, phi_normalization, loss_scale, nll_weight, sentence_avg):
        super().__init__(task)
        if not 0 <= nll_weight <= 1:
            raise UsageError(f"--nll-weight must be in [0, 1], got {nll_weight}")
        self.phi_normalization, self.loss_scale, self.nll_weight = phi_normalization, loss_scale, nll_weight
        self.sentence_avg = sentence_avg
        self.coefficients = self.loss = None

    def set_coefficients(self, coefficients):
        """The teacher's coefficients (:class:`l2t_fairseq.teacher.coefficients.Coefficients`: ``phi()`` and
        ``phi_init``, --phi-init, by default 1/ln|V|), handed over by the task ``l2t_translation``."""
        self.coefficients = coefficients
        phi_init = coefficients.phi_init
        self.loss = StudentLoss(
            self.padding_idx,
            coefficient_mean=phi_init if self.phi_normalization == "token_mean" else None,
            nll_weight=self.nll_weight,
            scale=4 / phi_init if self.loss_scale == "cross_entropy" else None,
        )

    def sample_size(self, sample):
        return sample["target"].size(0) if self.sentence_avg else sample["ntokens"]

    def forward(self, model, sample, reduce=True):
        if self.coefficients is None:
            raise UsageError(
                "--criterion l2t_dlf needs --task l2t_translation (it takes its coefficients from that task's teacher)"
            )
        net_output = model(**sample["net_input"])
        lprobs = log_probs(net_output)
        phi = self.coefficients.phi().to(lprobs.device)
        loss, nll_loss = self.loss(lprobs, model.get_targets(sample, net_output), phi)
        sample_size = self.sample_size(sample)
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
