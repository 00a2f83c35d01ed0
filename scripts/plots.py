"""The benchmark's plots, from its results.json and the L2T runs' teacher.jsonl.

    .venv/bin/python scripts/plots.py OUT DATA_BIN [--words WORD ...]

- ``dev_bleu.png``: dev BLEU (greedy, from fairseq's --eval-bleu validation) over updates, every loss, every seed;
- ``phi.png``: the teacher's coefficient Phi_t[w] over training for the most frequent target words and for
  selected ones (the paper's Figure 4 analogue);
- ``teacher_dev_measure.png``: the expected-BLEU dev measure M~ after each teacher update (Figure 3 analogue).
"""

import argparse
import glob
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FREQUENT = 5
NSPECIAL = 4  # fairseq's <s>, <pad>, </s>, <unk> come first in the dictionary


def target_words(data):
    """The target dictionary's words in index order (fairseq sorts them by training frequency)."""
    with open(os.path.join(data, "dict.en.txt"), encoding="utf-8") as f:
        return ["<s>", "<pad>", "</s>", "<unk>"] + [line.rsplit(" ", 1)[0] for line in f]


def teacher_logs(out):
    logs = {}
    for path in sorted(glob.glob(os.path.join(out, "l2t_dlf-seed*", "teacher.jsonl"))):
        seed = re.search(r"seed(\d+)", path).group(1)
        with open(path) as f:
            logs[seed] = [json.loads(line) for line in f]
    return logs


def plot_dev_bleu(out, curves):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {}
    for seed, by_loss in curves.items():
        for loss, curve in by_loss.items():
            if not curve:
                continue
            updates, bleu = zip(*curve)
            line = ax.plot(updates, bleu, color=colors.get(loss), alpha=0.8, label=None if loss in colors else loss)
            colors.setdefault(loss, line[0].get_color())
    ax.set_xlabel("student updates")
    ax.set_ylabel("dev BLEU (greedy)")
    ax.legend()
    ax.set_title("Dev BLEU over training (one line per seed)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "dev_bleu.png"), dpi=120)
    plt.close(fig)


def plot_phi(out, words, logs, selected):
    seed, records = next(iter(logs.items()))
    indices = list(range(NSPECIAL, NSPECIAL + FREQUENT))
    indices += [words.index(w) for w in selected if w in words and words.index(w) not in indices]
    updates = [r["update"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i in indices:
        ax.plot(updates, [r["phi"][i] for r in records], marker=".", label=f"{words[i]!r} (rank {i - NSPECIAL + 1})")
    ax.set_xlabel("student updates")
    ax.set_ylabel("Phi_t[w]")
    ax.set_title(f"Teacher's coefficients over training (seed {seed})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "phi.png"), dpi=120)
    plt.close(fig)


def plot_teacher_measure(out, logs):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for seed, records in logs.items():
        steps = [r for r in records if "dev_expected_bleu" in r]
        ax.plot(range(1, len(steps) + 1), [r["dev_expected_bleu"] for r in steps], marker="o", label=f"seed {seed}")
    ax.set_xlabel("teacher update")
    ax.set_ylabel("expected BLEU M~ on the dev batch, after the unroll")
    ax.set_title("Dev measure along the teacher's optimization")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "teacher_dev_measure.png"), dpi=120)
    plt.close(fig)


def plot_all(out, data, selected=None):
    with open(os.path.join(out, "results.json")) as f:
        curves = json.load(f)["dev_bleu_curves"]
    plot_dev_bleu(out, curves)
    logs = teacher_logs(out)
    if logs:
        words = target_words(data)
        selected = selected or [words[NSPECIAL + rank] for rank in (100, 1000, 5000) if NSPECIAL + rank < len(words)]
        plot_phi(out, words, logs, selected)
        plot_teacher_measure(out, logs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("data")
    parser.add_argument("--words", nargs="+", help="target words to follow besides the most frequent")
    args = parser.parse_args()
    plot_all(args.out, args.data, args.words)
