"""What the benchmark and the search train: the rows (loss flags) and the presets (data, student, budget)."""

import os
import shlex

import l2t_fairseq
from l2t_fairseq.noise import NOISE_KINDS

PLUGIN = os.path.dirname(os.path.abspath(l2t_fairseq.__file__))
REPO = os.path.dirname(PLUGIN)
SHARED = os.path.join(REPO, "..", "shared", "data")

CROSS_ENTROPY = ["--task", "translation", "--criterion", "cross_entropy"]
L2T = ["--task", "l2t_translation", "--criterion", "l2t_dlf"]
ROWS = {
    "cross_entropy": CROSS_ENTROPY,
    "label_smoothed": [
        "--task", "translation", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"
    ],
    "l2t_dlf": L2T,
    "l2t_dlf_frozen": [*L2T, "--freeze-teacher"],
    "l2t_dlf_trained": [*L2T, "--freeze-teacher"],
    # the L2T-DLF loss at the teacher's initial coefficients (every one --phi-init, whatever the state), never
    # stepped: the loss's bounded sigmoid shape alone, without what the teacher learns, at cross-entropy's cost
    "l2t_dlf_fixed": [*L2T, "--freeze-teacher"],
    "cross_entropy_equal_time": CROSS_ENTROPY,
    # the field's fixed token weighting, at cross-entropy's cost: a word's weight from its training frequency (Gu et
    # al. 2020), and the sentences of highest loss left out (Kang & Hashimoto 2020); the settings the dev search
    # chooses from a grid on the papers' values (l2t-search --configs token_adaptive_* loss_truncation_*) go here
    "token_adaptive": [*CROSS_ENTROPY[:3], "token_adaptive", "--adaptive-form", "exp", "--adaptive-t", "1.0"],
    "loss_truncation": [*CROSS_ENTROPY[:3], "loss_truncation", "--truncation-fraction", "0.2"],
    "sequence_risk": ["--task", "translation", "--criterion", "sequence_risk"],
    "softmax_margin": ["--task", "translation", "--criterion", "softmax_margin"],
    "actor_critic": ["--task", "actor_critic_translation", "--criterion", "actor_critic"],
}
BASELINE = "cross_entropy"
SEQUENCE_LEVEL = ("sequence_risk", "softmax_margin", "actor_critic")  # fine-tunes of the cross-entropy run
TEACHER_ROWS = ("l2t_dlf", "l2t_dlf_frozen", "l2t_dlf_trained")
FIXED = "l2t_dlf_fixed"  # the bar of what learning the coefficients adds: a teacher row must be ahead of it too
# cross-entropy given the compute of each row that costs more than it: the row whose compute it is given
EQUAL_TIME = {"cross_entropy_equal_time": "l2t_dlf",
              **{f"cross_entropy_equal_time_{row}": row for row in SEQUENCE_LEVEL}}
ROWS.update({row: CROSS_ENTROPY for row in EQUAL_TIME if row not in ROWS})
# cross-entropy on a data folder of its own (a preset's "row_data"): the clean data under noisy presets (the ceiling,
# not a competitor), and the noisy data with the pairs whose target copies its source dropped, at each threshold
FILTER_THRESHOLDS = (0.3, 0.5, 0.7)
FILTERED = {f"cross_entropy_filtered{threshold}": threshold for threshold in FILTER_THRESHOLDS}
DATA_ROWS = ("cross_entropy_clean", *FILTERED)
ROWS.update({row: CROSS_ENTROPY for row in DATA_ROWS})

TRANSFORMER_TOY = [
    "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3",
    "--lr-scheduler", "inverse_sqrt", "--cpu",
]
# the paper's LSTM-1 (one layer, attention), as examples/iwslt14/train.sh builds it
LSTM1 = [
    "--arch", "lstm", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "256",
    "--encoder-hidden-size", "256", "--decoder-embed-dim", "256", "--decoder-hidden-size", "256",
    "--decoder-out-embed-dim", "256", "--dropout", "0.2", "--cpu",
]
# Multi30k on the CPU: the data, 1,200 updates validated every 200, two runs at a time
MULTI30K = {
    "data": "runs/multi30k/bin",
    "prepare": [os.path.join(REPO, "examples", "multi30k", "prepare.sh"), "--out", "runs/multi30k"],
    "max_update": 1200,
    "validate_every": 200,
    "jobs": 2,
    "generate": ["--cpu", "--batch-size", "128"],
}
PRESETS = {
    "multi30k": {**MULTI30K, "train": [*TRANSFORMER_TOY, "--warmup-updates", "200", "--max-tokens", "4096"]},
    # the paper's regime: an LSTM-1 student trained with plain SGD as LSTM translation models were (Luong et al.
    # 2015): gradients summed over each sentence's words and averaged over sentences (--sentence-avg; fairseq's
    # default, per-token averaging, makes the same learning rate about 14x, the mean target length, smaller here),
    # clipped to norm 5; the learning rate constant, chosen on dev
    "multi30k-lstm1-sgd": {**MULTI30K, "train": [*LSTM1, "--optimizer", "sgd", "--lr", "1.0", "--lr-scheduler", "fixed",
                                                "--sentence-avg", "--clip-norm", "5.0", "--max-tokens", "4096"]},
    "iwslt14-small": {
        "data": "runs/iwslt14-small/bin",
        "prepare": [os.path.join(REPO, "examples", "iwslt14", "prepare.sh"), "--shared",
                    os.path.join(SHARED, "iwslt14"), "--out", "runs/iwslt14-small"],
        "max_update": 300,
        "validate_every": 100,
        "jobs": 2,
        "train": [*TRANSFORMER_TOY, "--warmup-updates", "100", "--max-tokens", "2048", "--max-valid-steps", "4"],
        "generate": ["--cpu", "--batch-size", "128"],
    },
    "full": {
        "data": "data/iwslt14/bin",
        "prepare": [os.path.join(REPO, "examples", "iwslt14", "prepare.sh"), "--out", "data/iwslt14"],
        "max_update": 50000,
        "validate_every": 2000,
        "jobs": 1,
        "train": [
            "--arch", "transformer_iwslt_de_en", "--share-decoder-input-output-embed", "--optimizer", "adam",
            "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt", "--warmup-updates",
            "4000", "--dropout", "0.3", "--weight-decay", "0.0001", "--max-tokens", "4096",
        ],
        "generate": ["--batch-size", "128"],
    },
}
# the paper-regime benchmark (its Table 3 at CPU scale): each student trained for the budget its cross-entropy run
# was measured to need on dev (docs/benchmark/multi30k-paper.md, "How the budgets were chosen")
PRESETS["multi30k-paper-transformer"] = {**PRESETS["multi30k"], "max_update": 8000}
# the SGD LSTM-1 at lr 1.0 for 4,000 updates, then halved every 400 (fairseq's step schedule; a "warm-up" from 1.0
# to 1.0 holds it constant until then)
PRESETS["multi30k-paper-lstm1-sgd"] = {**PRESETS["multi30k-lstm1-sgd"], "max_update": 6000, "train": [
    *LSTM1, "--optimizer", "sgd", "--lr", "1.0", "--lr-scheduler", "step", "--warmup-updates", "4000",
    "--warmup-init-lr", "1.0", "--lr-deacy-period", "400", "--lr-decay", "0.5", "--sentence-avg", "--clip-norm", "5.0",
    "--max-tokens", "4096",
]}
# noisy parallel data (l2t_fairseq.noise): a fifth of the training pairs corrupted, untranslated (the target a copy
# of the source) or misaligned (another pair's target, the control), dev and test clean; the Multi30k Transformer
# with Adam for 2,400 updates, a run that fits in a few hours of one CPU core (on the clean data cross-entropy's
# best dev BLEU still gains 1.5 over the last 20% of 2,400 updates: docs/benchmark/multi30k-noisy.md)
# each with cross-entropy on the clean data (the ceiling) and on the noisy data filtered at each threshold (the
# filter baseline: the report takes the threshold with the best dev BLEU)
for _kind in NOISE_KINDS:
    _noisy = [MULTI30K["prepare"][0], "--noise", f"{_kind}:0.2"]
    PRESETS[f"multi30k-{_kind}"] = {
        **PRESETS["multi30k"], "max_update": 2400, "data": f"runs/multi30k-{_kind}/bin",
        "prepare": [*_noisy, "--out", f"runs/multi30k-{_kind}"],
        "row_data": {"cross_entropy_clean": {"data": MULTI30K["data"], "prepare": MULTI30K["prepare"]}, **{
            row: {"data": f"runs/multi30k-{_kind}-filter{t}/bin",
                  "prepare": [*_noisy, "--filter-overlap", str(t), "--out", f"runs/multi30k-{_kind}-filter{t}"]}
            for row, t in FILTERED.items()}},
    }
# dev BLEU at every validation: greedy decoding, BPE removed, tokenized (as the test BLEU); the best checkpoint by it
EVAL_BLEU = [
    "--eval-bleu", "--eval-bleu-args", '{"beam": 1, "max_len_a": 1.2, "max_len_b": 10}', "--eval-tokenized-bleu",
    "--eval-bleu-remove-bpe", "--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric",
    "--validate-interval", "100000", "--save-interval", "100000",  # validate and save by updates, not epochs
]


class BenchmarkRows:
    """The benchmark's rows (``presets.ROWS``): each row's loss flags, the teacher it starts from, where its
    fine-tune starts."""

    def __init__(self, args):
        self.args = args

    def names(self):
        return list(ROWS)

    def flags(self, row):
        """The row's loss flags; the L2T rows, the fixed loss among them (its --phi-init is theirs), get
        --l2t-flags too."""
        return list(ROWS[row]) + (shlex.split(self.args.l2t_flags) if row in (*TEACHER_ROWS, FIXED) else [])

    def student_flags(self, row):
        """Flags of this row's student beyond the preset's: none."""
        return []

    def teacher_row(self, row):
        """The row whose learned teacher this row starts from, or None."""
        return "l2t_dlf" if row == "l2t_dlf_frozen" else None

    def finetune_start(self, row):
        """The update of the cross-entropy run of the same seed that this row fine-tunes from; None: trained from
        scratch."""
        return self.args.sequence_start_update if row in SEQUENCE_LEVEL else None

    def finetune_flags(self, row, checkpoint):
        """The fine-tune's schedule: the benchmark's fixed lr."""
        flags = ["--lr-scheduler", "fixed", "--lr", str(self.args.finetune_lr)]
        updates = self.args.max_update - self.finetune_start(row)
        return flags + (["--critic-pretrain-updates", str(updates // 2)] if row == "actor_critic" else [])
