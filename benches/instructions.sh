#!/usr/bin/env bash
# Instructions oauth-egress spends per request, counted by callgrind: a steadier figure than
# requests per second on a shared machine, for telling apart two versions of the request path.
#   benches/instructions.sh [rest|soap2k|soap200k] [BINARY]
# Starts the e2e bench's pieces (token endpoint, nginx upstream; `E2E_SERVE`), runs the proxy
# (BINARY, default target/release/oauth-egress, 1 worker) under valgrind, warms it up, then counts
# 10 s of `wrk -c10` and prints the user-space instructions per request (kernel time is not
# counted: it is the same for any version, one writev and one recvfrom per leg).
set -euo pipefail
cd "$(dirname "$0")/.."
case_name=${1:-rest}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for tool in valgrind nginx wrk; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo build --release -q
binary=$(realpath "${2:-target/release/oauth-egress}")
work=$(mktemp -d)
cleanup() {
    [ -n "${vg:-}" ] && kill "$vg" 2>/dev/null || true
    [ -n "${serve:-}" ] && kill "$serve" 2>/dev/null || true
    pkill -f "e2e-.*" 2>/dev/null || true
    # The bench's own children (its proxy, nginx instances) run with paths under its directory.
    [ -n "${dir:-}" ] && pkill -f "$dir" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
E2E_SERVE=900 E2E_WORKERS=1 cargo bench -q --bench e2e >"$work/serve.txt" 2>"$work/serve.err" &
serve=$!
for _ in $(seq 1 600); do grep -q "oauth-egress pid" "$work/serve.txt" 2>/dev/null && break; sleep 1; done
dir=$(grep -o "/tmp/\.tmp[A-Za-z0-9]*" "$work/serve.txt" | head -1)
port=$(grep -o "on 127.0.0.1:[0-9]*" "$work/serve.txt" | head -1 | cut -d: -f2)
free=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed "s/127.0.0.1:$port/127.0.0.1:$free/; s/^workers = .*/workers = 1/" "$dir/oauth-egress.toml" >"$dir/counted.toml"
case $case_name in
    rest) path=/services/data/v58.0/sobjects/Account/001 ;;
    soap2k) path=/services/Soap/u/58.0 ;;
    soap200k) path=/services/Soap/c/40.0 ;;
    *) echo "unknown case $case_name (rest, soap2k, soap200k)" >&2; exit 2 ;;
esac
(cd "$dir" && RUST_LOG=warn exec valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$binary" run --config "$dir/counted.toml" >"$work/vg.log" 2>&1) &
vg=$!
for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$free/" && break; sleep 0.5; done
wrk -t1 -c10 -d3s -s "$dir/$case_name.lua" "http://127.0.0.1:$free$path" >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
requests=$(wrk -t1 -c10 -d10s -s "$dir/$case_name.lua" "http://127.0.0.1:$free$path" | awk '/requests in/ {print $1}')
callgrind_control -d "$vg" >/dev/null 2>&1
sleep 2
dump=$(ls -t "$work"/cg.out.* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$case_name: $requests requests counted, $((total / requests)) instructions per request ($binary)"
