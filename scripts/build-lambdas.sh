#!/usr/bin/env bash
# Build the Lambdas as arm64 `provided.al2023` zips:
#   target/lambda/{ingest,projector,consumer}/bootstrap.zip
# cargo-lambda and zig come from PyPI (pinned in scripts/requirements-tools.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/tools.sh)
rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$' || rustup target add aarch64-unknown-linux-gnu
PATH="$bin:$PATH" cargo lambda build --release --arm64 --output-format zip --bin ingest --bin projector --bin consumer
for f in ingest projector consumer; do
  ls -l "target/lambda/$f/bootstrap.zip" | awk -v f="$f" '{ printf "%s: %.1f MB zip\n", f, $5 / 1e6 }'
done
