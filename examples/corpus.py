"""Steps every corpus preparation shares: Moses tokenization (sacremoses), joint BPE (subword-nmt) or a
joint sentencepiece model, and ``fairseq-preprocess --joined-dictionary``.

Used by ``examples/iwslt14/prepare.py`` and ``examples/multi30k/prepare.py``; text lives in files named
``{split}.{lang}`` for the splits train, valid and test.
"""

import os
import shutil
import subprocess
import sys

SPLITS = ("train", "valid", "test")


def add_output_arguments(parser, out, bpe_tokens):
    """The options every preparation shares: where to write, and how to segment."""
    parser.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    parser.add_argument("--spm", action="store_true", help="joint sentencepiece model instead of subword-nmt BPE")
    parser.add_argument("--bpe-tokens", type=int, default=bpe_tokens,
                        help="BPE merges / sentencepiece vocabulary (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2)


def fail(message):
    sys.exit(f"prepare.sh: error: {message}")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def tokenize(lines, lang, normalize=False, escape=True):
    """sacremoses' Moses tokenizer (and, with ``normalize``, its punctuation normalizer first)."""
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    tokenizer = MosesTokenizer(lang=lang)
    if normalize:
        normalizer = MosesPunctNormalizer(lang=lang)
        lines = [normalizer.normalize(line) for line in lines]
    return [tokenizer.tokenize(line, return_str=True, escape=escape) for line in lines]


def learn_bpe(text, merges, codes, langs):
    """subword-nmt's learn_bpe on the training text of both languages together, as fairseq does."""
    from subword_nmt.learn_bpe import learn_bpe as learn

    joint = [line for lang in langs for line in read_lines(os.path.join(text, f"train.{lang}"))]
    with open(codes, "w", encoding="utf-8") as out:
        learn(joint, out, merges, min_frequency=2)


def apply_bpe(text, codes, out, langs):
    from subword_nmt.apply_bpe import BPE

    with open(codes, encoding="utf-8") as f:
        bpe = BPE(f)
    for split in SPLITS:
        for lang in langs:
            lines = read_lines(os.path.join(text, f"{split}.{lang}"))
            write_lines(os.path.join(out, f"{split}.{lang}"), [bpe.process_line(line) for line in lines])


def apply_spm(text, size, out, langs):
    """A joint sentencepiece BPE model of ``size`` pieces, learned on the training text."""
    import sentencepiece as spm

    prefix = os.path.join(out, "spm")
    spm.SentencePieceTrainer.train(
        input=",".join(os.path.join(text, f"train.{lang}") for lang in langs), model_prefix=prefix,
        vocab_size=size, model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
    )
    processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
    for split in SPLITS:
        for lang in langs:
            lines = read_lines(os.path.join(text, f"{split}.{lang}"))
            pieces = [" ".join(processor.encode(line, out_type=str)) for line in lines]
            write_lines(os.path.join(out, f"{split}.{lang}"), pieces)


def segment_and_binarize(text, out, langs, spm, tokens, workers):
    """Joint BPE learned on the training text (or a joint sentencepiece model with ``spm``), applied to every
    split, then binarized into ``out/bin``; prints the split sizes."""
    segmented = os.path.join(out, "segmented")
    os.makedirs(segmented, exist_ok=True)
    if spm:
        apply_spm(text, tokens, segmented, langs)
    else:
        codes = os.path.join(segmented, "code")
        learn_bpe(text, tokens, codes, langs)
        apply_bpe(text, codes, segmented, langs)
    binarize(segmented, os.path.join(out, "bin"), langs, workers)
    report(text, os.path.join(out, "bin"), spm)


def binarize(segmented, destdir, langs, workers):
    """``fairseq-preprocess --joined-dictionary`` into a fresh ``destdir`` (it refuses to overwrite a dictionary)."""
    source, target = langs
    shutil.rmtree(destdir, ignore_errors=True)
    command = [
        os.path.join(os.path.dirname(sys.executable), "fairseq-preprocess"), "--source-lang", source,
        "--target-lang", target, "--joined-dictionary", "--destdir", destdir, "--workers", str(workers),
        *[arg for split in SPLITS for arg in (f"--{split}pref", os.path.join(segmented, split))],
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"fairseq-preprocess failed:\n{result.stderr[-2000:]}")


def report(text, destdir, spm, target="en"):
    for split in SPLITS:
        print(f"{split}: {len(read_lines(os.path.join(text, f'{split}.{target}')))} pairs")
    print(f"binarized data: {destdir} (BLEU de-segmentation: --remove-bpe {'sentencepiece' if spm else 'subword_nmt'})")
