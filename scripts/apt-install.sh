# Sourced by the ensure-*.sh scripts: `apt_install PACKAGE BINARY` installs Debian's PACKAGE
# with apt-get when this user can (root, or sudo without a password) and succeeds once BINARY
# is executable; it fails (saying nothing more) when it cannot install.
apt_install() {
  local package="$1" binary="$2" as_root=""
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
    as_root="sudo -n"
  fi
  echo "$package is missing; installing Debian's $package package"
  export DEBIAN_FRONTEND=noninteractive
  if $as_root apt-get -o DPkg::Lock::Timeout=300 update -q \
      && $as_root apt-get -o DPkg::Lock::Timeout=300 install -y -q "$package" \
      && [ -x "$binary" ]; then
    return 0
  fi
  echo "apt-get could not install $package (see above)." >&2
  return 1
}
