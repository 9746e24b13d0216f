#!/usr/bin/env bash
# Make sure Debian's Chromium is there for the browser tests (`make test` runs this first).
# Installs it with apt-get when this user can (root, or sudo without a password); otherwise
# stops with the command to run, so a test run never passes with the browser tests skipped.
set -euo pipefail
CHROMIUM="${TUS_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0

can_install=0
as_root=""
if [ "$CHROMIUM" = /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    can_install=1
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    can_install=1
    as_root="sudo -n"
  fi
fi

if [ "$can_install" = 1 ]; then
  echo "Chromium is missing; installing Debian's chromium package for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  if $as_root apt-get -o DPkg::Lock::Timeout=300 update -q \
      && $as_root apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium \
      && [ -x "$CHROMIUM" ]; then
    exit 0
  fi
  echo "apt-get could not install chromium (see above)." >&2
fi
cat >&2 <<MSG
The browser tests need Chromium at $CHROMIUM, and it could not be installed from here.
Install it, then run make test again:

    sudo apt-get install chromium

(or set TUS_CHROMIUM to a Chromium binary).
MSG
exit 1
