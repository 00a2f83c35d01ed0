"""How the teacher measures the student: greedy BLEU of a batch, and the smoothed expected BLEU of dev candidates.

:class:`DevMeasure` works behind two small interfaces that the task builds:
a :class:`Decoder` (the student's outputs on a batch, by fairseq's own
generator) and a dev stream (:class:`l2t_fairseq.dev_measure.batches.DevBatches`).
"""

import logging

from fairseq import utils

from l2t_fairseq import distributed
from l2t_fairseq.dev_measure.bleu import bleu_from_statistics, bleu_statistics, bleu_text, is_segmented
from l2t_fairseq.dev_measure.candidates import build_candidate_generator, build_candidates, decode
from l2t_fairseq.dev_measure.expected_bleu import DevExpectedBleu

logger = logging.getLogger(__name__)

HELDOUT_SEED_OFFSET = 2**31  # the held-out dev batch's candidates are sampled from a stream of their own


class Decoder:
    """The student's greedy outputs, or its ``count`` candidates by ``search``, on a batch: the task's
    ``build_generator`` and ``inference_step``, each generator built once."""

    def __init__(self, task, search, count):
        self.task, self.search, self.count = task, search, count
        self.generators = {}

    def __call__(self, model, sample, kind):
        """``kind``: "greedy" or "candidates"."""
        if kind not in self.generators:
            search, count = ("beam", 1) if kind == "greedy" else (self.search, self.count)
            self.generators[kind] = build_candidate_generator(self.task, model, search, count)
        return decode(self.task, self.generators[kind], model, sample)


class DevMeasure:
    """BLEU as the teacher reads it (``remove_bpe``: fairseq's ``--eval-bleu-remove-bpe``), on the batches of a
    dev stream, and the expected-BLEU objective of a dev batch's candidates."""

    def __init__(self, cfg, dictionary, remove_bpe, decoder, dev_stream, device):
        self.cfg, self.dictionary, self.remove_bpe = cfg, dictionary, remove_bpe
        self.decoder, self.dev_stream, self.device = decoder, dev_stream, device
        if not remove_bpe and is_segmented(dictionary):
            logger.warning("the target dictionary holds subword pieces: without --eval-bleu-remove-bpe the "
                           "teacher's BLEU is computed on them, not on words")

    def text(self, tokens, reference=False):
        return bleu_text(self.dictionary, tokens, self.remove_bpe, reference)

    def next_dev_batch(self, model):
        return self.dev_stream.next(model, self.device)

    def greedy_bleu(self, model, sample):
        """Greedy-decoding corpus BLEU of the student on every worker's batch, in [0, 1], and this worker's
        greedy outputs (``sample`` None: a dummy batch, or no dev batch, which adds nothing)."""
        greedy = self.decoder(model, sample, "greedy") if sample is not None else []
        references = [self.text(t, reference=True) for t in sample["target"]] if sample is not None else []
        statistics = bleu_statistics([self.text(h[0]) for h in greedy], references)
        return bleu_from_statistics(distributed.all_reduce_sum(statistics.to(self.device)).cpu()), greedy

    def objective(self, model, sample, seed, greedy=None):
        """The smoothed expected BLEU of ``sample``'s candidates: sampled (or n-best), plus the greedy output of
        each sentence (``greedy``: already decoded)."""
        with utils.set_torch_seed(seed):  # sampling must not shift the student's own RNG stream
            sampled = self.decoder(model, sample, "candidates")
        if greedy is None:
            greedy = self.decoder(model, sample, "greedy")
        candidates = build_candidates(
            sample, [s + g for s, g in zip(sampled, greedy)], self.text, self.dictionary.pad(), self.dictionary.eos()
        )
        # the candidates are scored in chunks of a training batch's size: the memory of one ordinary step
        max_tokens = self.cfg.max_tokens or self.cfg.teacher_dev_max_tokens
        return DevExpectedBleu(model, candidates, self.cfg.teacher_alpha, self.dictionary.pad(), max_tokens)

    def heldout_objective(self, model, seed, measured):
        """The objective of the next dev batch, for the lookahead gain, if ``measured`` (the batch is drawn either
        way: the dev batches the teacher learns from do not depend on when the gain is measured)."""
        sample = self.next_dev_batch(model)
        if sample is None or not measured:
            return None
        return self.objective(model, sample, seed + HELDOUT_SEED_OFFSET)

    def state_dict(self):
        return {"dev_batches": self.dev_stream.state_dict()}

    def load_state_dict(self, state):
        if state.get("dev_batches") is not None:
            self.dev_stream.load_state_dict(state["dev_batches"])
