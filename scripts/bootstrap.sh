# Sourced by scripts/start and scripts/test: create .venv and install the project into it.
set -euo pipefail
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  # Said before Python can read bot/content/operator.yaml: the one sentence of the install kept here.
  echo "Lỗi: cần Python 3.11 trở lên (máy đang có: $("$PY" --version 2>&1)). Cài Python 3.11 hoặc mới hơn, hoặc đặt PYTHON=/đường/dẫn/tới/python3.11 rồi chạy lại." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Versions come from the lock files (uv pip compile, with hashes); the project itself goes on top.
lock=requirements.lock
if [ "${1:-run}" = test ]; then lock=requirements-test.lock; fi
stamp=.venv/.installed-$(cat pyproject.toml "$lock" | sha256sum | cut -c1-16)-${1:-run}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  touch "$stamp"
fi
# The browser tests (web chat, dashboard) drive Debian's Chromium through Playwright, which never downloads a
# browser here: install it for tests.
if [ "${1:-run}" = test ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || command -v sudo || true)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; the browser test will fail in CI" >&2
fi
