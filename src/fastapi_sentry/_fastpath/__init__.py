"""The measured replacements of sentry-sdk pieces on the request path.

Each module replaces one piece of sentry-sdk's Starlette/FastAPI integrations (or its client) that
a profile showed costing far more than it gives; `benchmarks/bench_inprocess.py` measures them.
They are the only code that touches sentry-sdk's private names, all taken from `_sdk_seam`, which
checks them at import. Import nothing here unless `_sdk_seam.PROBLEM` is None.
"""
