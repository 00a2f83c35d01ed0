#!/usr/bin/env bash
# Usage: examples/iwslt14/train_transformer.sh [--loss ce|l2t] [--data DIR] [--save-dir DIR] [extra fairseq-train flags]
exec "$(dirname "$0")/train.sh" transformer "$@"
