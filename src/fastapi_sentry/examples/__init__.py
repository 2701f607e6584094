"""The repository's reference services, shipped so that `fastapi-sentry demo` works from a wheel.

Their code has one home, `examples/` in the repository, which is the code a reader copies. The
wheel build maps `examples/shop/` to `fastapi_sentry/examples/shop/` (`sources` in pyproject.toml).
An editable install only puts `src/` on the path, so in a checkout this package also looks in the
repository's `examples/` folder: the same files under either name, never a second copy.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CHECKOUT_EXAMPLES = _HERE.parents[2] / "examples"

if not (_HERE / "shop").is_dir() and (_CHECKOUT_EXAMPLES / "shop" / "app.py").is_file():
    __path__.append(str(_CHECKOUT_EXAMPLES))
