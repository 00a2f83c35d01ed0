#!/usr/bin/env bash
# Usage: examples/iwslt14/train_lstm1.sh [--loss ce|l2t] [--sgd] [--data DIR] [--save-dir DIR] [extra fairseq-train flags]
exec "$(dirname "$0")/train.sh" lstm1 "$@"
