#!/usr/bin/env bash
# Set up what one of the README's commands needs, and nothing more. Safe to run again: each step is
# skipped when already done.
#   setup.sh demo          .venv with the package and its inbox extra (all `fastapi-sentry demo` uses)
#   setup.sh [test]        .venv with the dev extras, Debian's chromium (browser tests), local services,
#                          and the npm clients of the compatibility suite (tests/compat/)
#   setup.sh bench         the test setup plus Debian's wrk (the HTTP benchmark's load generator)
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-test}
case "$target" in
  demo) extra=inbox apt=() services=no npm=no ;;
  test) extra=dev apt=(chromium) services=yes npm=yes ;;
  bench) extra=dev apt=(chromium wrk) services=yes npm=yes ;;
  *)
    echo "setup: unknown target '$target'; use demo, test or bench" >&2
    exit 2
    ;;
esac

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
# dev includes inbox, so a fresh dev install also serves the demo
fresh() { [ -f ".venv/.installed-$1" ] && [ ! pyproject.toml -nt ".venv/.installed-$1" ]; }
if ! fresh "$extra" && ! { [ "$extra" = inbox ] && fresh dev; }; then
  echo "setup: installing fastapi-sentry[$extra] into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extra]"
  touch ".venv/.installed-$extra"
fi

need_apt=()
for package in ${apt[@]+"${apt[@]}"}; do
  case "$package" in
    chromium) [ -x /usr/bin/chromium ] || need_apt+=(chromium) ;;  # the path the browser tests use
    *) command -v "$package" >/dev/null 2>&1 || need_apt+=("$package") ;;
  esac
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: ${need_apt[*]} missing; install them with apt-get (as root)" >&2
  fi
fi

# Clients nobody here wrote, for tests/compat/: the JavaScript SDK and sentry-cli (its npm package
# carries the binary). Latest versions, installed once into a cache outside the checkout; the
# tests fail (not skip) when they are missing. Keep the folder in step with tests/compat/conftest.py.
if [ "$npm" = yes ]; then
  clients="${XDG_CACHE_HOME:-$HOME/.cache}/fastapi-sentry/compat-clients"
  if [ ! -f "$clients/node_modules/@sentry/node/package.json" ] || [ ! -x "$clients/node_modules/.bin/sentry-cli" ]; then
    if command -v npm >/dev/null 2>&1; then
      echo "setup: installing @sentry/node and @sentry/cli (npm) into $clients"
      mkdir -p "$clients"
      (cd "$clients" && npm install --no-audit --no-fund --loglevel=error @sentry/node@latest @sentry/cli@latest)
    else
      echo "setup: npm missing; install Debian's nodejs and npm packages for tests/compat/" >&2
    fi
  fi
fi

if [ "$services" = yes ]; then
  bash scripts/services.sh
fi
