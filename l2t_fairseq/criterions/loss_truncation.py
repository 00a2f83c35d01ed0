"""Criterion ``loss_truncation``: cross-entropy that leaves out the training sentences whose loss is among the
highest (loss truncation, Kang & Hashimoto, ACL 2020), made for noisy references.

Each training sentence's loss is its mean token negative log-likelihood.  The last ``--truncation-window`` of them
estimate online the ``1 - c`` quantile of the sentence losses (``c``: ``--truncation-fraction``), and a sentence above
it is dropped from the batch's loss.  Until the window holds that many sentences nothing is dropped: the run is
hot-started on cross-entropy, as the authors' ``LossDropper`` does.  Validation is plain cross-entropy.  The window
is not in fairseq's checkpoints (it saves a criterion's state only where it has parameters): a resumed run fills it
again, on cross-entropy meanwhile.  Under data parallelism each worker keeps its own.
"""

from dataclasses import dataclass, field

import torch
from fairseq.criterions import register_criterion
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig

from l2t_fairseq.errors import UsageError


@dataclass
class LossTruncationConfig(CrossEntropyCriterionConfig):
    truncation_fraction: float = field(
        default=0.1, metadata={"help": "c: the share of sentences, by highest loss, left out of training"}
    )
    truncation_window: int = field(
        default=10000, metadata={"help": "the last N training sentences' losses estimate the quantile; until N have "
                                         "been seen, nothing is dropped (the hot start)"}
    )


@register_criterion("loss_truncation", dataclass=LossTruncationConfig)
class LossTruncationCriterion(CrossEntropyCriterion):
    def __init__(self, task, sentence_avg, truncation_fraction, truncation_window):
        super().__init__(task, sentence_avg)
        if not 0 <= truncation_fraction < 1 or truncation_window < 1:
            raise UsageError(f"--truncation-fraction must lie in [0, 1) and --truncation-window be at least 1, got "
                             f"{truncation_fraction} and {truncation_window}")
        self.fraction = truncation_fraction
        # a ring of the last sentence losses (a buffer: it follows the criterion's device), and how many were seen
        self.register_buffer("window", torch.zeros(truncation_window, dtype=torch.float64), persistent=False)
        self.seen = 0

    def record(self, sentence_losses):
        """Adds a batch's sentence losses to the window."""
        size = self.window.numel()
        positions = (self.seen + torch.arange(sentence_losses.numel(), device=self.window.device)) % size
        self.window[positions] = sentence_losses.detach().to(self.window)
        self.seen += sentence_losses.numel()

    def kept(self, sentence_losses):
        """Which sentences the loss keeps: all until the window is full, then those at or below its ``1 - c``
        quantile.  In training, the batch joins the window first."""
        if not self.training:
            return torch.ones_like(sentence_losses, dtype=torch.bool)
        self.record(sentence_losses)
        if self.seen < self.window.numel() or self.fraction == 0:
            return torch.ones_like(sentence_losses, dtype=torch.bool)
        cutoff = torch.quantile(self.window, 1 - self.fraction)
        return sentence_losses.detach().to(self.window) <= cutoff

    def compute_loss(self, model, net_output, sample, reduce=True):
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        target = model.get_targets(sample, net_output)
        keep = target.ne(self.padding_idx).to(lprobs.dtype)
        token_nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * keep
        sentence_losses = token_nll.sum(-1) / keep.sum(-1).clamp(min=1)
        loss = token_nll * self.kept(sentence_losses).unsqueeze(-1).to(token_nll.dtype)
        return (loss.sum() if reduce else loss.view(-1)), None
