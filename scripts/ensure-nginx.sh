#!/usr/bin/env bash
# Make sure Debian's nginx is there for `make cluster` and the scale-out test (the balancer in
# front of the MinIO nodes and of the app instances). Installs it with apt-get when this user
# can; otherwise stops with the command to run.
set -euo pipefail
NGINX="${TUS_NGINX:-/usr/sbin/nginx}"
[ -x "$NGINX" ] && exit 0
. "$(dirname "$0")/apt-install.sh"
if [ "$NGINX" = /usr/sbin/nginx ] && apt_install nginx "$NGINX"; then
  exit 0
fi
cat >&2 <<MSG
The cluster needs nginx at $NGINX, and it could not be installed from here. Install it:

    sudo apt-get install nginx

(or set TUS_NGINX to an nginx binary).
MSG
exit 1
