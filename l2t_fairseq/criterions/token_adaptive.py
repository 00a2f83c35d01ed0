"""Criterion ``token_adaptive``: cross-entropy with a fixed weight per target word set from its training frequency
(token-level adaptive training, Gu et al., EMNLP 2020).

A word's weight is ``w(y) = 1 + A f(c(y)) / max_y f`` with ``c(y)`` its count in the training targets (the target
dictionary's counts) over the median count of the vocabulary's words, and ``f`` one of the paper's two forms:

- ``exp``: ``f(c) = exp(-T c)``: the rarer the word, the larger its weight, up to ``1 + A``; the most frequent
  words keep about 1;
- ``chi2``: ``f(c) = c^2 exp(-T c)``: the words of middling frequency (``c`` near ``2 / T``) weigh most, the rarest
  and the most frequent about 1.

The weights never fall below 1: no word is trained less than under cross-entropy.  Normalizing ``f`` by its largest
value makes ``A`` the largest weight's excess over 1 (the authors' code sets it to ``e - 1``).  Special symbols
weigh 1.  The weights are fixed before training: what L2T-DLF's per-word coefficients learn should beat them.
"""

import math
from dataclasses import dataclass, field

import torch
from fairseq.criterions import register_criterion
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq.dataclass import ChoiceEnum

from l2t_fairseq.errors import UsageError

FORMS = ("exp", "chi2")


@dataclass
class TokenAdaptiveConfig(CrossEntropyCriterionConfig):
    adaptive_form: ChoiceEnum(FORMS) = field(
        default="exp", metadata={"help": "exp: weight falls with frequency; chi2: middling frequencies weigh most"}
    )
    adaptive_a: float = field(
        default=math.e - 1, metadata={"help": "A: the largest weight is 1 + A (default e - 1, as the authors' code)"}
    )
    adaptive_t: float = field(
        default=1.0, metadata={"help": "T: how fast the form decays with a word's count over the median count"}
    )


def adaptive_weights(counts, nspecial, form, a, t):
    """The weight of each dictionary entry from its training ``counts`` (the first ``nspecial`` entries, fairseq's
    special symbols, weigh 1)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    words = counts[nspecial:]
    c = words / words[words > 0].median()
    f = torch.exp(-t * c) if form == "exp" else c**2 * torch.exp(-t * c)
    return torch.cat([torch.ones(nspecial, dtype=torch.float64), 1 + a * f / f.max()])


@register_criterion("token_adaptive", dataclass=TokenAdaptiveConfig)
class TokenAdaptiveCriterion(CrossEntropyCriterion):
    def __init__(self, task, sentence_avg, adaptive_form, adaptive_a, adaptive_t):
        super().__init__(task, sentence_avg)
        if adaptive_a < 0 or adaptive_t <= 0:
            raise UsageError(f"--adaptive-a must be at least 0 and --adaptive-t above 0, got {adaptive_a} and "
                             f"{adaptive_t}")
        dictionary = task.target_dictionary
        self.register_buffer("weights", adaptive_weights(dictionary.count, dictionary.nspecial, adaptive_form,
                                                         adaptive_a, adaptive_t).float(), persistent=False)

    def compute_loss(self, model, net_output, sample, reduce=True):
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        lprobs = lprobs.view(-1, lprobs.size(-1))
        target = model.get_targets(sample, net_output).view(-1)
        keep = target.ne(self.padding_idx).to(lprobs.dtype)
        token_lprobs = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        loss = -(self.weights.to(lprobs)[target] * token_lprobs * keep)
        return (loss.sum() if reduce else loss), None
