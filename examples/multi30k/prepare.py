"""Builds and binarizes Multi30k task 1 German-English, the CPU quality benchmark.

From the raw cased text in ``--data`` (default ``../shared/data/multi30k``):
sacremoses punctuation normalization and tokenization, lowercasing (the
corpus's usual ``lc.norm.tok`` form), joint BPE learned on train with
subword-nmt (or a joint sentencepiece model with ``--spm``), then
``fairseq-preprocess --joined-dictionary``.  train = ``train`` (29,000 pairs),
valid = ``val`` (1,014), test = ``test_2016_flickr`` (1,000).  Offline;
rerunning rebuilds the same files.

``--noise untranslated:0.2`` (or ``misaligned:0.2``) corrupts that share of
the training pairs after tokenization, chosen by ``--noise-seed``
(:mod:`l2t_fairseq.noise`): BPE is then learned on the noisy training set, as a
user would, and ``OUT/noise.json`` lists the corrupted pairs.  ``--filter-overlap
T`` drops the training pairs whose target shares more than T of its tokens with
its source (a practitioner's first filter for untranslated pairs), after the
noise; ``noise.json`` lists the dropped pairs too.  Dev and test stay clean.
"""

import argparse
import json
import logging
import os
import sys

logging.basicConfig(level=logging.WARNING)  # before fairseq's import, whose INFO lines would precede any error

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from corpus import add_output_arguments, fail, read_lines, segment_and_binarize, tokenize, write_lines  # noqa: E402

from l2t_fairseq.noise import copy_share, corrupt, parse_noise  # noqa: E402

LANGS = ("de", "en")  # source, target
SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}  # fairseq split: Multi30k file
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "multi30k")


def tokenized_split(data, text):
    """``text/{split}.{lang}``: normalized, tokenized, lowercased; the pairs checked for equal line counts."""
    for split, name in SPLITS.items():
        paths = [os.path.join(data, f"{name}.{lang}") for lang in LANGS]
        for path in paths:
            if not os.path.isfile(path):
                fail(f"--data {data}: missing {path}")
        lines = [read_lines(path) for path in paths]
        if len(lines[0]) != len(lines[1]):
            fail(f"--data {data}: {paths[0]} has {len(lines[0])} lines, {paths[1]} has {len(lines[1])}")
        for lang, side in zip(LANGS, lines):
            tokens = tokenize(side, lang, normalize=True, escape=False)
            write_lines(os.path.join(text, f"{split}.{lang}"), [line.lower() for line in tokens])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.normpath(DEFAULT_DATA),
                        help="folder with the raw Multi30k files (default: %(default)s)")
    add_output_arguments(parser, "data/multi30k", bpe_tokens=8000)
    parser.add_argument("--noise", help="KIND:RATE, e.g. untranslated:0.2 or misaligned:0.2: corrupt that share of "
                        "the training pairs (dev and test stay clean)")
    parser.add_argument("--noise-seed", type=int, default=1, help="which pairs are corrupted (default: %(default)s)")
    parser.add_argument("--filter-overlap", type=float, help="drop the training pairs whose target shares more "
                        "than this share of its tokens with its source")
    args = parser.parse_args()
    if args.bpe_tokens < 1:
        fail(f"--bpe-tokens must be at least 1, got {args.bpe_tokens}")
    try:
        noise = parse_noise(args.noise) if args.noise else None
    except ValueError as e:
        fail(str(e))
    if args.filter_overlap is not None and not 0 <= args.filter_overlap < 1:
        fail(f"--filter-overlap must be in [0, 1), got {args.filter_overlap}")

    text = os.path.join(args.out, "tok")
    os.makedirs(text, exist_ok=True)
    tokenized_split(args.data, text)
    record = {"noise": None, "filter_overlap": None}
    if noise:
        record.update(make_noisy(text, *noise, args.noise_seed))
    if args.filter_overlap is not None:
        record.update(drop_copies(text, args.filter_overlap))
    with open(os.path.join(args.out, "noise.json"), "w") as f:
        json.dump(record, f)
    segment_and_binarize(text, args.out, LANGS, args.spm, args.bpe_tokens, args.workers)


def make_noisy(text, kind, rate, seed):
    """Corrupts ``text/train.en`` in place: what ``noise.json`` records of it."""
    sources, targets = (read_lines(os.path.join(text, f"train.{lang}")) for lang in LANGS)
    noisy, corrupted = corrupt(sources, targets, kind, rate, seed)
    write_lines(os.path.join(text, "train.en"), noisy)
    print(f"noise: {kind}, {len(corrupted)} of {len(targets)} training pairs (seed {seed})")
    return {"noise": kind, "rate": rate, "seed": seed, "pairs": len(targets), "corrupted": corrupted}


def drop_copies(text, threshold):
    """Drops the training pairs whose target copies more than ``threshold`` of its tokens from its source: what
    ``noise.json`` records of it (indices of the pairs before dropping)."""
    sources, targets = (read_lines(os.path.join(text, f"train.{lang}")) for lang in LANGS)
    dropped = [i for i, (s, t) in enumerate(zip(sources, targets)) if copy_share(s, t) > threshold]
    gone = set(dropped)
    for lang, lines in zip(LANGS, (sources, targets)):
        write_lines(os.path.join(text, f"train.{lang}"), [line for i, line in enumerate(lines) if i not in gone])
    print(f"filter: {len(dropped)} training pairs whose target copies more than {threshold} of its source dropped")
    return {"filter_overlap": threshold, "dropped": dropped}


if __name__ == "__main__":
    main()
