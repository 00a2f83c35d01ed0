"""Builds and binarizes Multi30k task 1 German-English, the CPU quality benchmark.

From the raw cased text in ``--data`` (default ``../shared/data/multi30k``):
sacremoses punctuation normalization and tokenization, lowercasing (the
corpus's usual ``lc.norm.tok`` form), joint BPE learned on train with
subword-nmt (or a joint sentencepiece model with ``--spm``), then
``fairseq-preprocess --joined-dictionary``.  train = ``train`` (29,000 pairs),
valid = ``val`` (1,014), test = ``test_2016_flickr`` (1,000).  Offline;
rerunning rebuilds the same files.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from corpus import add_output_arguments, fail, read_lines, segment_and_binarize, tokenize, write_lines  # noqa: E402

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
    args = parser.parse_args()
    if args.bpe_tokens < 1:
        fail(f"--bpe-tokens must be at least 1, got {args.bpe_tokens}")

    text = os.path.join(args.out, "tok")
    os.makedirs(text, exist_ok=True)
    tokenized_split(args.data, text)
    segment_and_binarize(text, args.out, LANGS, args.spm, args.bpe_tokens, args.workers)


if __name__ == "__main__":
    main()
