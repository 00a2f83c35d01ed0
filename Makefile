# `make demo`: set up .venv and run the built-in L2T-DLF example; `make test`: the linter and the test suite.
.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	bash examples/toy/run.sh

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q -p no:cacheprovider tests
