"""Reference services for fastapi-sentry; run them from the repository root.

`shop/` is also packaged as `fastapi_sentry.examples.shop` (see pyproject.toml), one copy for both.
"""
