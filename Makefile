# The two commands of the README. Both set everything up first (idempotent).
.PHONY: demo test bench setup

setup:
	bash scripts/setup.sh

# Set up, then run the whole graph on the embedded default corpus.
demo:
	bash scripts/setup.sh && .venv/bin/curamix run examples/default/spec.yaml

# Set up, then run the whole test suite (slow end-to-end tests included).
test:
	bash scripts/setup.sh test && .venv/bin/python -m pytest -q -p no:cacheprovider tests

# Benchmarks against peers (installs them first); results go to bench/RESULTS.md.
bench:
	bash scripts/setup.sh bench,test && .venv/bin/python -m bench.run
