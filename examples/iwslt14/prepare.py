"""Builds and binarizes IWSLT'14 German-English the way fairseq's prepare-iwslt14.sh does.

Standard split (``--from DIR`` or a download): Moses tokenization (sacremoses),
training pairs longer than 175 tokens or with a length ratio above 1.5
removed, lowercasing; valid = every 23rd training line, test =
dev2010 + dev2012 + tst2010-2012; joint BPE with 10k merges (subword-nmt) or a
joint 10k sentencepiece model (``--spm``); ``fairseq-preprocess
--joined-dictionary``.

Small split (``--shared DIR``, for CPU development): the pre-tokenized 19k-pair
training subset (less the pairs with placeholder tokens, see shared_split) and
the standard valid split in ``DIR/tok``, segmented with
the standard split's BPE codes ``DIR/bpe10k/code``.  The standard test split
is not on these machines, so the standard valid split is halved: its odd lines
are the dev set, its even lines the test set.
"""

import argparse
import os
import re
import subprocess
import sys
import tarfile
import urllib.request

URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
LANGS = ("de", "en")
TRAIN_TAGS = "train.tags.de-en.{lang}"
TEST_SETS = (
    "IWSLT14.TED.dev2010.de-en",
    "IWSLT14.TEDX.dev2012.de-en",
    "IWSLT14.TED.tst2010.de-en",
    "IWSLT14.TED.tst2011.de-en",
    "IWSLT14.TED.tst2012.de-en",
)
TAG_LINES = ("<url>", "<talkid>", "<keywords>")


def fail(message):
    sys.exit(f"prepare.sh: error: {message}")


def raw_files():
    return [TRAIN_TAGS.format(lang=lang) for lang in LANGS] + [
        f"{name}.{lang}.xml" for name in TEST_SETS for lang in LANGS
    ]


def find_raw(source, work):
    """The folder holding the raw IWSLT'14 files: ``source`` itself, its ``de-en/``, or an extracted de-en.tgz."""
    if not os.path.isdir(source):
        fail(f"--from {source}: no such folder")
    archive = os.path.join(source, "de-en.tgz")
    if os.path.isfile(archive):
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        source = work
    for folder in (source, os.path.join(source, "de-en")):
        if os.path.isfile(os.path.join(folder, TRAIN_TAGS.format(lang="de"))):
            missing = [f for f in raw_files() if not os.path.isfile(os.path.join(folder, f))]
            if missing:
                fail(f"--from {source}: missing {', '.join(missing)}")
            return folder
    fail(f"--from {source}: no de-en.tgz and no {TRAIN_TAGS.format(lang='de')} (in it or in its de-en/)")


def download(work):
    archive = os.path.join(work, "de-en.tgz")
    print(f"downloading {URL}", file=sys.stderr)
    try:
        urllib.request.urlretrieve(URL, archive)
    except OSError as e:
        fail(f"cannot download {URL} ({e}); fetch de-en.tgz elsewhere and pass --from FOLDER")
    return find_raw(work, work)


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def train_text(path):
    """Training lines without the talk metadata lines, title/description tags removed."""
    lines = [line for line in read_lines(path) if not line.lstrip().startswith(TAG_LINES)]
    return [re.sub(r"</?(title|description)>", "", line).strip() for line in lines]


def xml_segments(path):
    segments = [line for line in read_lines(path) if "<seg id" in line]
    segments = [re.sub(r"\s*</seg>\s*", "", re.sub(r"<seg id=\"[0-9]*\">\s*", "", s)) for s in segments]
    return [s.replace("\u2019", "'").strip() for s in segments]


def tokenize(lines, lang):
    from sacremoses import MosesTokenizer

    tokenizer = MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(line, return_str=True, escape=True) for line in lines]


def clean(source, target, ratio=1.5, max_length=175):
    """Moses clean-corpus-n.perl: keep pairs of 1..175 tokens with a length ratio of at most 1.5."""
    kept = []
    for s, t in zip(source, target):
        ls, lt = len(s.split()), len(t.split())
        if 1 <= ls <= max_length and 1 <= lt <= max_length and ls / lt <= ratio and lt / ls <= ratio:
            kept.append((s, t))
    return [s for s, _ in kept], [t for _, t in kept]


def standard_split(raw, text):
    """Tokenized, lowercased train/valid/test text, as prepare-iwslt14.sh writes it."""
    train = {lang: tokenize(train_text(os.path.join(raw, TRAIN_TAGS.format(lang=lang))), lang) for lang in LANGS}
    if len(train["de"]) != len(train["en"]):
        fail(f"{raw}: train.tags.de-en.de and .en have {len(train['de'])} and {len(train['en'])} lines")
    train["de"], train["en"] = clean(train["de"], train["en"])
    for lang in LANGS:
        lines = [line.lower() for line in train[lang]]
        write_lines(os.path.join(text, f"valid.{lang}"), lines[22::23])  # awk 'NR % 23 == 0'
        write_lines(os.path.join(text, f"train.{lang}"), [x for i, x in enumerate(lines) if i % 23 != 22])
        test = [s for name in TEST_SETS for s in xml_segments(os.path.join(raw, f"{name}.{lang}.xml"))]
        write_lines(os.path.join(text, f"test.{lang}"), [line.lower() for line in tokenize(test, lang)])


PLACEHOLDER = re.compile(r"<[A-Z]_[0-9]+>")


def shared_split(shared, text):
    """The tokenized training subset, and the standard valid split halved into dev (odd lines) and test (even).

    Pairs with placeholder tokens (``<S_3>`` / ``<T_3>`` standing for masked
    words; the second half of ``../shared/data/iwslt14/tok/train``) are not
    translations of each other's words and are dropped.
    """
    names = [f"{split}.{lang}" for split in ("train", "valid") for lang in LANGS]
    paths = {name: os.path.join(shared, "tok", name) for name in names}
    for path in [*paths.values(), os.path.join(shared, "bpe10k", "code")]:
        if not os.path.isfile(path):
            fail(f"--shared {shared}: missing {path}")
    pairs = list(zip(read_lines(paths["train.de"]), read_lines(paths["train.en"])))
    clean_pairs = [(de, en) for de, en in pairs if not (PLACEHOLDER.search(de) or PLACEHOLDER.search(en))]
    if len(clean_pairs) < len(pairs):
        dropped = len(pairs) - len(clean_pairs)
        print(f"dropped {dropped} of {len(pairs)} training pairs with placeholder tokens (<S_k>, <T_k>)")
    for index, lang in enumerate(LANGS):
        write_lines(os.path.join(text, f"train.{lang}"), [pair[index] for pair in clean_pairs])
        valid = read_lines(paths[f"valid.{lang}"])
        write_lines(os.path.join(text, f"valid.{lang}"), valid[0::2])
        write_lines(os.path.join(text, f"test.{lang}"), valid[1::2])


def learn_bpe(text, merges, codes):
    """subword-nmt's learn_bpe on the German and English training text together, as fairseq does."""
    from subword_nmt.learn_bpe import learn_bpe as learn

    joint = [line for lang in LANGS for line in read_lines(os.path.join(text, f"train.{lang}"))]
    with open(codes, "w", encoding="utf-8") as out:
        learn(joint, out, merges, min_frequency=2)


def apply_bpe(text, codes, out):
    from subword_nmt.apply_bpe import BPE

    with open(codes, encoding="utf-8") as f:
        bpe = BPE(f)
    for split in ("train", "valid", "test"):
        for lang in LANGS:
            lines = read_lines(os.path.join(text, f"{split}.{lang}"))
            write_lines(os.path.join(out, f"{split}.{lang}"), [bpe.process_line(line) for line in lines])


def apply_spm(text, size, out):
    import sentencepiece as spm

    prefix = os.path.join(out, "spm")
    spm.SentencePieceTrainer.train(
        input=",".join(os.path.join(text, f"train.{lang}") for lang in LANGS), model_prefix=prefix,
        vocab_size=size, model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
    )
    processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
    for split in ("train", "valid", "test"):
        for lang in LANGS:
            lines = read_lines(os.path.join(text, f"{split}.{lang}"))
            pieces = [" ".join(processor.encode(line, out_type=str)) for line in lines]
            write_lines(os.path.join(out, f"{split}.{lang}"), pieces)


def binarize(segmented, destdir, workers):
    command = [
        os.path.join(os.path.dirname(sys.executable), "fairseq-preprocess"), "--source-lang", "de",
        "--target-lang", "en", "--joined-dictionary", "--destdir", destdir, "--workers", str(workers),
        *[arg for split in ("train", "valid", "test") for arg in (f"--{split}pref", os.path.join(segmented, split))],
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"fairseq-preprocess failed:\n{result.stderr[-2000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", metavar="DIR", help="local de-en.tgz, or the folder it unpacks to")
    source.add_argument("--shared", metavar="DIR", help="the small split from ../shared/data/iwslt14")
    parser.add_argument("--out", default="data/iwslt14", help="output folder (default: %(default)s)")
    parser.add_argument("--spm", action="store_true", help="joint sentencepiece model instead of subword-nmt BPE")
    parser.add_argument("--bpe-tokens", type=int, default=10000,
                        help="BPE merges / sentencepiece vocabulary (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.shared and args.spm:
        fail("--spm: the --shared split uses the standard BPE codes of DIR/bpe10k/code")

    text, segmented, work = (os.path.join(args.out, d) for d in ("tok", "segmented", "raw"))
    for folder in (text, segmented, work):
        os.makedirs(folder, exist_ok=True)
    if args.shared:
        shared_split(args.shared, text)
        apply_bpe(text, os.path.join(args.shared, "bpe10k", "code"), segmented)
    else:
        standard_split(find_raw(args.source, work) if args.source else download(work), text)
        if args.spm:
            apply_spm(text, args.bpe_tokens, segmented)
        else:
            codes = os.path.join(segmented, "code")
            learn_bpe(text, args.bpe_tokens, codes)
            apply_bpe(text, codes, segmented)
    binarize(segmented, os.path.join(args.out, "bin"), args.workers)
    for split in ("train", "valid", "test"):
        print(f"{split}: {len(read_lines(os.path.join(text, split + '.en')))} pairs")
    print(f"binarized data: {os.path.join(args.out, 'bin')} (BLEU de-segmentation: "
          f"--remove-bpe {'sentencepiece' if args.spm else 'subword_nmt'})")


if __name__ == "__main__":
    main()
