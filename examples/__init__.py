"""Reference services for fastapi-sentry; run them from the repository root."""
