"""Tiny students and synthetic batches, made by the tests themselves."""

import os
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
    """A 1-layer LSTM (with attention) or Transformer student over ``dictionary``."""
    task = Namespace(source_dictionary=dictionary, target_dictionary=dictionary)
    if kind == "lstm":
        args = Namespace(
            encoder_embed_dim=6, encoder_hidden_size=6, decoder_embed_dim=6, decoder_hidden_size=6,
            decoder_out_embed_dim=6, encoder_layers=1, decoder_layers=1, dropout=dropout, criterion="l2t_dlf",
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
