"""Tiny students and synthetic batches, made by the tests themselves."""

import os
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
from fairseq.data import Dictionary, LanguagePairDataset
from fairseq.models import lstm, transformer

import l2t_fairseq  # noqa: F401 - registers the task and criterion

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(REPO, "l2t_fairseq")
BIN = os.path.dirname(sys.executable)


def make_dictionary(words=9):
    dictionary = Dictionary()
    for i in range(words):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def tiny_student(kind, dictionary, dropout=0.1):
    """An LSTM with attention (``lstm``: 1 layer, ``lstm2``: 2 layers) or a 1-layer Transformer student."""
    task = Namespace(source_dictionary=dictionary, target_dictionary=dictionary)
    if kind.startswith("lstm"):
        layers = 2 if kind == "lstm2" else 1
        args = Namespace(
            encoder_embed_dim=6, encoder_hidden_size=6, decoder_embed_dim=6, decoder_hidden_size=6,
            decoder_out_embed_dim=6, encoder_layers=layers, decoder_layers=layers, dropout=dropout,
            criterion="l2t_dlf",
        )
        lstm.base_architecture(args)
        model = lstm.LSTMModel.build_model(args, task)
    else:
        args = Namespace(
            encoder_embed_dim=8, encoder_ffn_embed_dim=12, encoder_layers=1, encoder_attention_heads=2,
            decoder_embed_dim=8, decoder_ffn_embed_dim=12, decoder_layers=1, decoder_attention_heads=2,
            dropout=dropout, share_decoder_input_output_embed=True, max_source_positions=64,
            max_target_positions=64,
        )
        transformer.base_architecture(args)
        model = transformer.TransformerModel.build_model(args, task)
    return model.double().train()


def synthetic_batch(dictionary, sentences=3, seed=0, max_len=6):
    """A collated fairseq batch of random pairs of different lengths (so with padding)."""
    generator = torch.Generator().manual_seed(seed)

    def sentence():
        length = int(torch.randint(2, max_len + 1, (1,), generator=generator))
        words = torch.randint(dictionary.nspecial, len(dictionary), (length,), generator=generator)
        return torch.cat([words, torch.tensor([dictionary.eos()])])

    sources = [sentence() for _ in range(sentences)]
    targets = [sentence() for _ in range(sentences)]
    dataset = LanguagePairDataset(
        sources, [len(s) for s in sources], dictionary, targets, [len(t) for t in targets], dictionary
    )
    return dataset.collater([dataset[i] for i in range(sentences)])


@pytest.fixture
def dictionary():
    return make_dictionary()


# -- end-to-end fixtures: a toy corpus and one short L2T-DLF training run ----------

def run(*args, check=True):
    """Runs a command of the venv (``fairseq-train``, ...) and returns the CompletedProcess."""
    command = [os.path.join(BIN, args[0]), *map(str, args[1:])]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def preprocess(corpus, destdir, *extra):
    run(
        "fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
        "--trainpref", corpus / "train", "--validpref", corpus / "valid", "--testpref", corpus / "test",
        "--destdir", destdir, "--workers", "1", *extra,
    )
    return destdir


def l2t_train(data, save_dir, *extra, check=True):
    return run(
        "fairseq-train", data, "--user-dir", PLUGIN, "--task", "l2t_translation", "--criterion", "l2t_dlf",
        "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "2e-3", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "100", "--max-tokens", "2000", "--save-dir", save_dir, "--no-epoch-checkpoints",
        "--log-format", "simple", "--log-interval", "10", "--cpu", "--seed", "1", *extra, check=check,
    )


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("toy")
    run("python", os.path.join(REPO, "examples", "toy", "make_corpus.py"), "--out", corpus,
        "--train", "2000", "--valid", "100", "--test", "100")
    return corpus


@pytest.fixture(scope="session")
def toy_data(toy_corpus):
    return preprocess(toy_corpus, toy_corpus / "bin")


TRAINED_UPDATES = 300
TEACHER_INTERVAL = 50


@pytest.fixture(scope="session")
def trained(toy_data, tmp_path_factory):
    """300 updates of L2T-DLF training with a teacher update every 50; returns (save_dir, log)."""
    save_dir = tmp_path_factory.mktemp("l2t_run")
    result = l2t_train(
        toy_data, save_dir, "--max-update", TRAINED_UPDATES, "--teacher-interval", TEACHER_INTERVAL,
        "--unroll-steps", "3", "--eval-bleu", "--eval-bleu-args", '{"beam": 1}', "--eval-tokenized-bleu",
    )
    return save_dir, result.stdout


def teacher_state(checkpoint):
    from fairseq import checkpoint_utils

    return checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))["extra_state"]["L2TTranslationTask"]
