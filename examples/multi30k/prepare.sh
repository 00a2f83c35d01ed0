#!/usr/bin/env bash
# Multi30k task 1 de-en for fairseq, from ../shared/data/multi30k (or --data DIR): sacremoses
# normalization and tokenization, lowercasing, joint BPE (subword-nmt; --spm for sentencepiece),
# fairseq-preprocess --joined-dictionary. valid = val, test = test_2016_flickr.
# Usage: examples/multi30k/prepare.sh [--data DIR] [--out data/multi30k] [--spm] [--bpe-tokens 8000]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
exec "${PYTHON:-python3}" "$ROOT/examples/multi30k/prepare.py" "$@"
