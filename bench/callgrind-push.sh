#!/usr/bin/env bash
# The SQLite writer's instructions per push (docs/performance.md, "The SQLite writer's
# fixed cost per group"): one client pushes BATCH-entry sales (the bench's) one after
# the other over one keep-alive connection, so that every group holds one push; HQ
# (`sync-server run`, SQLite, header_timeout_secs = 600) runs under
# `valgrind --tool=callgrind --separate-threads=yes`. Two runs, 10 pushes of warm-up
# then SHORT and LONG pushes; prints the writer thread's instructions per push,
# (LONG run's - SHORT run's) / (LONG - SHORT).
#
#   bench/callgrind-push.sh SYNC_SERVER_BIN PUSH_BODIES_BIN [BATCH] [SHORT] [LONG] [OUT_DIR] [CARDS]
#
# CARDS (default 20,000, the bench's): how many cards the sales go to; with 100 every
# card after the warm-up is one HQ holds, with 20,000 every card of the run is new.
#
# PUSH_BODIES_BIN is testkit's example `push_bodies`
# (`cargo build --release -p testkit --example push_bodies`).
set -euo pipefail
server=$1 bodies=$2 batch=${3:-10} short=${4:-50} long=${5:-250}
out=${6:-$(mktemp -d)} cards=${7:-20000}
mkdir -p "$out"

run() { # pushes after the warm-up -> the writer's instructions on stdout
    local n=$1 dir="$out/run-$1" port
    rm -rf "$dir"; mkdir -p "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$server" --database "sqlite:$dir/hq.db" terminal add --store store-1 --terminal till-1 \
        | tail -n1 > "$dir/token"
    printf 'header_timeout_secs = 600\n' > "$dir/hq.toml"
    "$bodies" store-1 till-1 $((10 + n)) "$batch" "$cards" > "$dir/bodies.jsonl"
    valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$dir/cg.out" \
        "$server" --config "$dir/hq.toml" --database "sqlite:$dir/hq.db" \
        run --listen "127.0.0.1:$port" > "$dir/hq.log" 2>&1 &
    local pid=$!
    python3 - "$port" "$dir/token" "$dir/bodies.jsonl" <<'PY'
import http.client, sys, time
port, token, bodies = int(sys.argv[1]), open(sys.argv[2]).read().strip(), sys.argv[3]
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.request("GET", "/v1/health"); r = c.getresponse(); r.read()
        if r.status == 200: break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("HQ never answered")
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
for line in open(bodies):
    c.request("POST", "/v1/sync/push", body=line.strip().encode(), headers=h)
    r = c.getresponse(); b = r.read()
    if r.status != 200: sys.exit(f"push answered {r.status}: {b[:300]!r}")
PY
    kill -TERM "$pid"; wait "$pid" || true
    # The writer: the thread file that runs the groups (`group::run_and_answer`).
    local f
    f=$(grep -l 'group::run_and_answer' "$dir"/cg.out-* | head -n1)
    grep -m1 '^summary:' "$f" | awk '{print $2}'
    echo "$f" > "$dir/writer"
}

a=$(run "$short"); b=$(run "$long")
echo "writer: $short pushes $a, $long pushes $b instructions"
echo "per push: $(( (b - a) / (long - short) ))  (out: $out)"
