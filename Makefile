# The two commands the README starts with: `make demo` and `make test`. Each sets up what it needs
# and nothing more (scripts/setup.sh): the demo only the package with its inbox extra.
.PHONY: setup demo test lint typecheck pytest bench bench-full

setup:
	@bash scripts/setup.sh test

demo:
	@bash scripts/setup.sh demo
	.venv/bin/fastapi-sentry demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: setup
	.venv/bin/mypy --strict src
	.venv/bin/mypy --strict tests examples benchmarks

pytest: setup
	.venv/bin/pytest

test: lint typecheck pytest

bench:
	@bash scripts/setup.sh bench
	.venv/bin/python benchmarks/run_all.py

bench-full:
	@bash scripts/setup.sh bench
	.venv/bin/python benchmarks/run_all.py --full
