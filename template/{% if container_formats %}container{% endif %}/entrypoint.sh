#!/usr/bin/env bash
# Container entrypoint: activate the pixi environment, then run the command given.
# Job scripts must not source this file (the exec would swallow them); they source
# /app/activate.sh, which holds the activation alone.
set -euo pipefail
# Batch systems run images as arbitrary non-root UIDs, often without a usable HOME.
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
    export HOME="${_CONDOR_SCRATCH_DIR:-/tmp}"
fi
# shellcheck source=/dev/null
. /app/activate.sh
exec "$@"
