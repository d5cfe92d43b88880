#!/usr/bin/env bash
# Installs everything the project needs into .venv from the lock file; safe to re-run.
#   scripts/setup.sh          the app and the engine
#   scripts/setup.sh --test   also the test tools and Debian's Chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: fedtext needs Python 3.11 (TensorFlow Federated 0.87 has no wheels for $("$python" -V 2>&1))" >&2
  exit 1
fi

# uv applies the lock file's jax/jaxlib override, which plain pip cannot (see README).
# --compile-bytecode: Python otherwise compiles every module it imports on each start where
# bytecode cannot be written (PYTHONDONTWRITEBYTECODE, a read-only image); that was 1 of the
# page's 1.6 s of imports on 2 cores.
uv=$(command -v uv || true)
if [ -z "$uv" ]; then
  if [ ! -x .cache/bootstrap/bin/uv ]; then
    "$python" -m venv .cache/bootstrap
    .cache/bootstrap/bin/pip install --quiet --disable-pip-version-check "uv==0.9.30"
  fi
  uv=.cache/bootstrap/bin/uv
fi

if [ "${1:-}" = "--test" ]; then
  "$uv" sync --frozen --compile-bytecode --python "$python" --group dev
  if [ ! -x /usr/bin/chromium ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
  fi
else
  "$uv" sync --frozen --compile-bytecode --python "$python" --no-dev --inexact
fi
