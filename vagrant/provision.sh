#!/usr/bin/env bash
# Runs inside the Vagrant VM (Debian 12) as root, called by ./Vagrantfile.
#   provision.sh setup   Debian packages + the project's venv (the repository's scripts/setup.sh)
#   provision.sh tests   the guest test suite ($SKIFF_TESTS, default tests/engine)
set -euo pipefail
src=/home/vagrant/skiff
export DEBIAN_FRONTEND=noninteractive

case "${1:-setup}" in
  setup)
    if [ ! -f "$src/scripts/setup.sh" ]; then
      echo "provision: $src does not hold the repository (did the synced folder fail?)" >&2
      exit 1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates >/dev/null
    "$src/scripts/setup.sh"
    ;;
  tests)
    cd "$src"
    # word splitting is wanted: SKIFF_TESTS may carry pytest options
    # shellcheck disable=SC2086
    exec .venv/bin/pytest ${SKIFF_TESTS:-tests/engine}
    ;;
  *)
    echo "usage: provision.sh setup|tests" >&2
    exit 2
    ;;
esac
