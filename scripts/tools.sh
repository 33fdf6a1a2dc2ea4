#!/usr/bin/env bash
# Install the pinned PyPI tools into target/tools-venv and print the venv's
# bin directory. Idempotent: reinstalls only when a requirements file changes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is needed to install the pinned tools (cargo-lambda, ziglang, moto, checkov)" >&2; exit 1; }
venv=target/tools-venv
mkdir -p target
stamp="$venv/.installed"
reqs=(scripts/requirements-*.txt)
want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -x "$venv/bin/pip" ]]; then
  python3 -m venv "$venv" >&2
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  for r in "${reqs[@]}"; do
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$r" >&2
  done
  echo "$want" >"$stamp"
fi
echo "$PWD/$venv/bin"
