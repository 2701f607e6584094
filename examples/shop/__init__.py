"""A small shop API wired to Sentry only through `fastapi_sentry.install()` and `install_celery()`.

From the repository root: `uvicorn --factory examples.shop.app:create_app`. The same files ship in
the wheel as `fastapi_sentry.examples.shop` (that is what `fastapi-sentry demo` runs), which is why
the modules import each other relatively: copy the folder into your service under any name.
"""
