#!/usr/bin/env bash
# IWSLT'14 de-en for fairseq: the standard split (downloaded, or --from DIR holding de-en.tgz or
# its contents), or the small CPU split from ../shared/data/iwslt14 (--shared DIR).
# Usage: examples/iwslt14/prepare.sh [--from DIR | --shared DIR] [--out data/iwslt14] [--spm] [--bpe-tokens 10000]
# See examples/iwslt14/prepare.py --help for what each step does.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
exec "${PYTHON:-python3}" "$ROOT/examples/iwslt14/prepare.py" "$@"
