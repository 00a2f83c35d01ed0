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
import sys
import tarfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from corpus import (  # noqa: E402
    add_output_arguments,
    apply_bpe,
    binarize,
    fail,
    read_lines,
    report,
    segment_and_binarize,
    tokenize,
    write_lines,
)

URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
LANGS = ("de", "en")  # source, target
TRAIN_TAGS = "train.tags.de-en.{lang}"
TEST_SETS = (
    "IWSLT14.TED.dev2010.de-en",
    "IWSLT14.TEDX.dev2012.de-en",
    "IWSLT14.TED.tst2010.de-en",
    "IWSLT14.TED.tst2011.de-en",
    "IWSLT14.TED.tst2012.de-en",
)
TAG_LINES = ("<url>", "<talkid>", "<keywords>")


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
        fail(f"cannot download {URL} ({e}); give the data another way: --from DIR, a folder holding de-en.tgz "
             "(fetched elsewhere) or the de-en/ folder it unpacks to; or --shared DIR, the small pre-tokenized split")
    return find_raw(work, work)


def train_text(path):
    """Training lines without the talk metadata lines, title/description tags removed."""
    lines = [line for line in read_lines(path) if not line.lstrip().startswith(TAG_LINES)]
    return [re.sub(r"</?(title|description)>", "", line).strip() for line in lines]


def xml_segments(path):
    segments = [line for line in read_lines(path) if "<seg id" in line]
    segments = [re.sub(r"\s*</seg>\s*", "", re.sub(r"<seg id=\"[0-9]*\">\s*", "", s)) for s in segments]
    return [s.replace("\u2019", "'").strip() for s in segments]


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", metavar="DIR", help="local de-en.tgz, or the folder it unpacks to")
    source.add_argument("--shared", metavar="DIR", help="the small split from ../shared/data/iwslt14")
    add_output_arguments(parser, "data/iwslt14", bpe_tokens=10000)
    args = parser.parse_args()
    if args.shared and args.spm:
        fail("--spm: the --shared split uses the standard BPE codes of DIR/bpe10k/code")

    text, segmented, work = (os.path.join(args.out, d) for d in ("tok", "segmented", "raw"))
    for folder in (text, segmented, work):
        os.makedirs(folder, exist_ok=True)
    if args.shared:  # the standard split's codes, not codes learned on the subset
        shared_split(args.shared, text)
        apply_bpe(text, os.path.join(args.shared, "bpe10k", "code"), segmented, LANGS)
        binarize(segmented, os.path.join(args.out, "bin"), LANGS, args.workers)
        report(text, os.path.join(args.out, "bin"), args.spm)
    else:
        standard_split(find_raw(args.source, work) if args.source else download(work), text)
        segment_and_binarize(text, args.out, LANGS, args.spm, args.bpe_tokens, args.workers)


if __name__ == "__main__":
    main()
