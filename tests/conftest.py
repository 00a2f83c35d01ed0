"""Tiny students and synthetic batches, made by the tests themselves."""

import inspect
import os
import re
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
from fairseq.data import Dictionary, LanguagePairDataset
from fairseq.models import lstm, transformer

import l2t_fairseq  # noqa: F401 - registers the task and criterion
from l2t_fairseq import commands
from l2t_fairseq.dev_measure.candidates import build_candidates

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(REPO, "l2t_fairseq")


@pytest.fixture(autouse=True, scope="session")
def own_cache(tmp_path_factory):
    """The benchmark's cached kernel fingerprints go to a folder of this test run's, not the user's cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


# the CUDA variants of the exactness and training tests; they run where a GPU is (docs/tests.md says where they ran)
CUDA_MARKS = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def needs_cuda(test):
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


# what trains a student with fairseq (fairseq-train, its Trainer, the plugin's commands and recipes): a test that
# calls one, itself or through a fixture, is marked slow
TRAINS = re.compile(r"\b(run|l2t_train|train_in_process|ddp_train|trainer_for|Trainer|script|cli_main|benchmark)\(")


def trains(function, fixtures):
    return bool(TRAINS.search(inspect.getsource(function))) or any(
        trains(definition.func, fixtures) for name in inspect.signature(function).parameters
        for definition in fixtures.get(name, ()) if definition.func is not function
    )


def pytest_collection_modifyitems(items):
    """``-m "not slow"``: the tests that train nothing (seconds in all); ``-m "not cuda"``: those that need no GPU."""
    for item in items:
        if trains(item.function, item._fixtureinfo.name2fixturedefs):
            item.add_marker(pytest.mark.slow)
SHARED = os.path.join(REPO, "..", "shared", "data", "iwslt14")


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


def dictionary_text(dictionary):
    """``text(tokens, reference=False)`` as the task builds it: the target string without padding or EOS."""
    return lambda tokens, reference=False: dictionary.string(tokens[tokens.ne(dictionary.pad())])


def synthetic_candidates(dictionary, sample, per_sentence=4, seed=0):
    """Fixed candidates for each sentence of ``sample``: its reference, a corrupted copy and random ones."""
    generator = torch.Generator().manual_seed(seed)
    hypotheses = []
    for target in sample["target"]:
        reference = target[target.ne(dictionary.pad())]
        corrupted = reference.clone()
        corrupted[0] = dictionary.nspecial  # first word replaced
        nbest = [reference, corrupted]
        while len(nbest) < per_sentence:
            length = int(torch.randint(2, 7, (1,), generator=generator))
            words = torch.randint(dictionary.nspecial, len(dictionary), (length,), generator=generator)
            nbest.append(torch.cat([words, torch.tensor([dictionary.eos()])]))
        hypotheses.append(nbest)
    return build_candidates(sample, hypotheses, dictionary_text(dictionary), dictionary.pad(), dictionary.eos())


@pytest.fixture
def dictionary():
    return make_dictionary()


# -- end-to-end fixtures: a toy corpus and one short L2T-DLF training run ----------

# cheap teacher steps (a 256-token dev batch, 2 sampled candidates) for the tests of the benchmark and the search,
# which test the runs' orchestration, not the teacher
CHEAP_TEACHER_STEPS = "--teacher-dev-max-tokens 256 --teacher-candidates 2"


def run(*args, check=True):
    """Runs a console command (``fairseq-train``, ...) or ``python``, by this interpreter, and returns the
    CompletedProcess."""
    command = [*([sys.executable] if args[0] == "python" else commands.command(args[0])), *map(str, args[1:])]
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


def l2t_flags(data, save_dir, *extra, device="cpu"):
    """fairseq-train's flags for the toy L2T-DLF student (Adam, as the demo), on the CPU or fairseq's CUDA device."""
    return [
        str(data), "--user-dir", PLUGIN, "--task", "l2t_translation", "--criterion", "l2t_dlf",
        "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "2e-3", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "100", "--max-tokens", "2000", "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--log-format", "simple", "--log-interval", "10", *(["--cpu"] if device == "cpu" else []), "--seed", "1",
        *map(str, extra),
    ]


def l2t_train(data, save_dir, *extra, check=True, device="cpu"):
    return run("fairseq-train", *l2t_flags(data, save_dir, *extra, device=device), check=check)


def train_in_process(monkeypatch, *flags):
    """``fairseq-train FLAGS`` in this process (no interpreter start-up, no fairseq import)."""
    from fairseq_cli.train import cli_main

    monkeypatch.setattr(sys, "argv", ["fairseq-train", *map(str, flags)])
    cli_main()


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
        "--lookahead-gain-every", "1",
    )
    return save_dir, result.stdout


def teacher_weights(teacher):
    """``W`` of a saved teacher (its ``state_dict``), whichever its parametrization; and ``W`` at initialization."""
    from l2t_fairseq.teacher.model import default_phi_init

    if "log_W" in teacher:
        weights = teacher["log_W"]
        return weights.exp(), torch.full_like(weights, default_phi_init(weights.size(0))).log().exp()
    weights = teacher["W"]
    return weights, torch.full_like(weights, default_phi_init(weights.size(0)))


def teacher_state(checkpoint):
    from fairseq import checkpoint_utils

    return checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))["extra_state"]["L2TTranslationTask"]


# -- the IWSLT'14 example on a tiny slice of ../shared/data/iwslt14 (made here, in tmp) --------

def head(path, n, skip=0):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f][skip:skip + n]


def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def script(name, *args, check=True, example="iwslt14"):
    """Runs a script of examples/EXAMPLE."""
    command = [os.path.join(REPO, "examples", example, name), *map(str, args)]
    # the recipes run in the active environment: this interpreter's
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """The small CPU split (--shared) built from a slice of the shared corpus laid out like it.

    The slice ends with 20 pairs from the shared corpus's second half, whose words are masked by
    placeholder tokens (<S_k>, <T_k>): prepare.sh must drop them.
    """
    shared = tmp_path_factory.mktemp("shared_slice")
    (shared / "tok").mkdir()
    (shared / "bpe10k").mkdir()
    for lang in ("de", "en"):
        train = os.path.join(SHARED, "tok", f"train.{lang}")
        write(shared / "tok" / f"train.{lang}", head(train, 600) + head(train, 20, skip=9480))
        write(shared / "tok" / f"valid.{lang}", head(os.path.join(SHARED, "tok", f"valid.{lang}"), 80))
    os.symlink(os.path.join(SHARED, "bpe10k", "code"), shared / "bpe10k" / "code")
    out = tmp_path_factory.mktemp("small")
    result = script("prepare.sh", "--shared", shared, "--out", out)
    assert "dropped 20 of 620 training pairs with placeholder tokens" in result.stdout
    for split, pairs in (("train", 600), ("valid", 40), ("test", 40)):
        assert f"{split}: {pairs} pairs" in result.stdout
    return out / "bin"
