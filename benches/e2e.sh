#!/usr/bin/env bash
# oauth-egress side by side with nginx on this machine (see benches/e2e.rs for what it measures).
# On a fresh Debian machine: installs nginx and wrk with apt when missing, then runs the bench.
#   benches/e2e.sh                      full run (about 30 minutes on 2 cores)
#   E2E_SECONDS=3 E2E_ROUNDS=1 E2E_SUBJECTS=5000 benches/e2e.sh    a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# nginx as installed starts a system instance; the bench runs its own on free ports.
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
cargo bench --bench e2e
