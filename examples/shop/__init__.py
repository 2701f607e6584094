"""A small shop API wired to Sentry only through `fastapi_sentry.install()` and `install_celery()`.

Run it from the repository root: `uvicorn --factory examples.shop.app:create_app`.
"""
