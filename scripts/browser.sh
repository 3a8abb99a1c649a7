#!/usr/bin/env bash
# Install the browser the tests in tests/browser drive: Debian's `chromium` (Playwright only talks to it over
# CDP; it never downloads a browser of its own, so `playwright install` is never run).
# Locally a browser that cannot be installed only makes those tests skip; with CI=true it is an error.
set -uo pipefail

if ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = "0" ]; then
    echo "browser: installing chromium (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    # Bounded: a mirror that does not answer must not hang the test command.
    timeout 300 apt-get update -qq >/dev/null || true
    timeout 900 apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null || true
  fi
fi

if ! command -v chromium >/dev/null; then
  echo "browser: chromium (Debian package chromium) is missing" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "browser: the tests in tests/browser will be skipped (CI=true makes this an error)" >&2
fi
exit 0
