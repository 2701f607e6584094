# The two commands the README starts with: `make demo` and `make test`. Both set up what they need.
.PHONY: setup demo test lint typecheck pytest bench

setup:
	@bash scripts/setup.sh

demo: setup
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

bench: setup
	.venv/bin/python benchmarks/run_all.py
