# shellcheck shell=bash
# The pixi environment's activation, sourced by the entrypoint and by job scripts.
# pixi's shell hook (/app/shell-hook.sh, written at build time) sources conda's
# activate.d scripts, which read unset variables and may end on a failed test: run it
# with -e and -u off, then give the caller back its strict mode.
_activate_flags=$-
set +eu
# shellcheck source=/dev/null
. /app/shell-hook.sh
case $_activate_flags in *e*) set -e ;; esac
case $_activate_flags in *u*) set -u ;; esac
unset _activate_flags
