#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs every
# test (unit, golden, fuzz seeds, and end-to-end mounts when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
export PATH="/usr/local/go/bin:$PATH"
go vet ./...
go test -count=1 -timeout 20m ./... "$@"
