#!/usr/bin/env bash
# The web app's venv (.venv-web, the [web-test] extra) and, for its tests, Debian's chromium (Playwright's own
# browser downloads are not used). Installing chromium needs root; without it, install the package yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "The browser tests need /usr/bin/chromium: apt-get install chromium (as root)." >&2
    exit 1
  fi
fi
bash scripts/setup-env.sh web-test
