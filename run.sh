#!/usr/bin/env bash
# The main job: set everything up, then run the engine on its default data root and socket.
#   sudo ./run.sh            -> skiffd on unix:///run/skiff/skiff.sock, data in /var/lib/skiff
#   DOCKER_HOST=unix:///run/skiff/skiff.sock docker run --rm busybox echo hi
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/skiffd "$@"
