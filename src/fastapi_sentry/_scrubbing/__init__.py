"""Scrubbing: secrets and personal data out of events before they leave the process.

Pure: `Scrubber` works on plain dicts and never imports sentry_sdk, so it is testable alone.
`detectors` holds the key rules and value detectors; `scrubber` walks an event with them.
"""

from fastapi_sentry._scrubbing.scrubber import (
    DEFAULT_REPLACEMENT,
    Scrubber,
    ScrubbingConfigError,
    scrub_event,
)

__all__ = ["DEFAULT_REPLACEMENT", "Scrubber", "ScrubbingConfigError", "scrub_event"]
