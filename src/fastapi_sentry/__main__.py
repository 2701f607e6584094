"""`python -m fastapi_sentry`: the same command line as the `fastapi-sentry` script."""

import sys

from fastapi_sentry._cli import main

if __name__ == "__main__":
    sys.exit(main())
