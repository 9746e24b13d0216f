#!/usr/bin/env bash
# Make sure Debian's Chromium is there for the browser tests (`make test` runs this first).
# Installs it with apt-get when this user can (root, or sudo without a password); otherwise
# stops with the command to run, so a test run never passes with the browser tests skipped.
set -euo pipefail
CHROMIUM="${TUS_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0

. "$(dirname "$0")/apt-install.sh"
if [ "$CHROMIUM" = /usr/bin/chromium ] && apt_install chromium "$CHROMIUM"; then
  exit 0
fi
cat >&2 <<MSG
The browser tests need Chromium at $CHROMIUM, and it could not be installed from here.
Install it, then run make test again:

    sudo apt-get install chromium

(or set TUS_CHROMIUM to a Chromium binary).
MSG
exit 1
