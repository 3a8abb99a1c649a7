#!/usr/bin/env bash
# Install the independent HTTP/2 peers the push-transport conformance tests run against, when missing:
# `nghttpd` (Debian's nghttp2-server, the nghttp2 project's server). hypercorn comes from PyPI (the dev extra).
# Locally a peer that cannot be installed only makes its tests skip; with CI=true it is an error, never a skip.
set -uo pipefail

if ! command -v nghttpd >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = "0" ]; then
    echo "peers: installing nghttp2-server (nghttpd)"
    export DEBIAN_FRONTEND=noninteractive
    # Bounded: a mirror that does not answer must not hang the test command.
    timeout 300 apt-get update -qq >/dev/null || true
    timeout 300 apt-get install -y -qq --no-install-recommends nghttp2-server >/dev/null || true
  fi
fi

if ! command -v nghttpd >/dev/null; then
  echo "peers: nghttpd (Debian package nghttp2-server) is missing" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "peers: its conformance tests will be skipped (CI=true makes this an error)" >&2
fi
exit 0
