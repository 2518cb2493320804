#!/bin/sh
# Installs Debian's chromium when it is missing (the dashboard's browser test drives it headless).
# Runs as root (CI does), non-interactively; prints the executable's path.
set -eu
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
command -v chromium
