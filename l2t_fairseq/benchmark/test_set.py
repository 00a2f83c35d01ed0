"""The test set, decoded once per finished run from its best checkpoint (beam 5, BPE removed), and scored."""

import gzip
import os
import re

from l2t_fairseq import commands
from l2t_fairseq.benchmark.presets import PLUGIN, REPO
from l2t_fairseq.benchmark.run_segments import measured_run


def decode_test_set(data, generate_flags, run_dir, threads, beam=5):
    """Test hypotheses, references and sources in corpus order (fairseq's tokenized text, BPE removed), and
    BLEU4, decoded with ``beam`` (5: the run's result; 1, greedy: beside it, as its dev BLEU was measured)."""
    command = [
        *commands.command("fairseq-generate"), data, "--user-dir", PLUGIN, "--path",
        os.path.join(run_dir, "checkpoint_best.pt"), "--gen-subset", "test", "--beam", str(beam), "--remove-bpe",
        "--max-len-a", "1.2", "--max-len-b", "10", *generate_flags,
    ]
    log = "generate.log" if beam == 5 else f"generate-beam{beam}.log"
    output = measured_run(command, os.path.join(run_dir, log), threads, cwd=REPO)[2]
    by_id = {"H": {}, "T": {}, "S": {}}
    for kind, index, text in re.findall(r"^([HTS])-(\d+)\t(?:[-0-9.e]+\t)?(.*)$", output, re.M):
        by_id[kind][int(index)] = text
    count = max(by_id["T"]) + 1
    hypotheses, references, sources = ([by_id[kind].get(i, "") for i in range(count)] for kind in "HTS")
    return hypotheses, references, sources, float(re.search(r"BLEU4 = ([0-9.]+)", output).group(1))


HYPOTHESES = ".hyp.gz"  # a record's test outputs, a line each, compressed: about a third of the size, and read as
# it is by sacrebleu (``sacrebleu REF -i ROW-seedN.hyp.gz``)


def write_lines(path, lines):
    """``lines`` to ``path``, gzip-compressed where it ends in ``.gz``, with no time stamp or name inside: the same
    lines make the same bytes."""
    text = "".join(line + "\n" for line in lines).encode("utf-8")
    with open(path, "wb") as f:
        if path.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as compressed:
                compressed.write(text)
        else:
            f.write(text)


def read_lines(path):
    """The lines ``write_lines`` wrote to ``path``."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def test_side_path(records, name, row, own_data):
    """Where the test set's ``name`` (``reference.txt``, ``source.txt``) is kept: one file for the rows on the
    preset's data, a file of the row's own (``ROW.reference.txt``) for a row on data of its own, whose vocabulary
    may map other words to ``<unk>``."""
    return os.path.join(records, f"{row}.{name}" if own_data else name)


def row_test_side(records, name, row):
    """The test set's ``name`` as ``row`` saw it: the row's own file where it keeps one, else the shared one."""
    own = test_side_path(records, name, row, own_data=True)
    return own if os.path.isfile(own) else test_side_path(records, name, row, own_data=False)
