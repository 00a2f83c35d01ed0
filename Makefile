# `make demo`: set up .venv and run the built-in L2T-DLF example; `make test`: the linter and the test suite.
.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	PYTHON=.venv/bin/python bash examples/toy/run.sh

# the tests: one worker per core (pytest-xdist), each single-threaded (their models are too small for torch's threads)
test: setup
	.venv/bin/ruff check .
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist worksteal --durations=25 tests
