#!/usr/bin/env bash
# The benchmark: gatehouse against express-session (SQLite and memory),
# axum + tower-sessions (SQLite) and a bare rouille server, one after
# another on this machine, with wrk on loopback. Bounded in time: every wrk
# run lasts DURATION seconds (default 8).
#
#   benches/run.sh [sweeps]          # default 2 sweeps; results in benches/results/
#   PEERS="gatehouse gatehouse-https axum rouille-bare" DURATION=5 benches/run.sh 1
#
# PEERS picks what runs, in this order (default: all of them):
#   gatehouse        gatehouse on SQLite over plain HTTP (and on PostgreSQL /
#                    Redis when their URLs are given, below)
#   gatehouse-https  gatehouse serving HTTPS itself (a certificate from
#                    `gatehouse tls self-signed`), "who am I" with keep-alive
#   express-sqlite express-memory axum rouille-bare   the peers
# Without express-* in PEERS, Node.js is neither needed nor used.
#
# Needs: wrk, curl, a C compiler; for the express peers node + npm
# (better-sqlite3 builds from source here). Installs wrk with apt-get if
# missing.
#
# With GATEHOUSE_BENCH_POSTGRES (a URL of a role that may create schemas;
# psql must be installed) gatehouse also runs on PostgreSQL, and with
# GATEHOUSE_BENCH_REDIS as well on PostgreSQL + Redis sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sweeps=${1:-2}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
PG=${GATEHOUSE_BENCH_POSTGRES:-}
REDIS=${GATEHOUSE_BENCH_REDIS:-}
PEERS=${PEERS:-gatehouse gatehouse-https express-sqlite express-memory axum rouille-bare}
wants() { [[ " $PEERS " == *" $1 "* ]]; }
node_peers=false
for p in $PEERS; do
    case $p in
        gatehouse | gatehouse-https | axum | rouille-bare) ;;
        express-sqlite | express-memory) node_peers=true ;;
        *) echo "unknown peer in PEERS: $p" >&2; exit 2 ;;
    esac
done
out=$root/benches/results
mkdir -p "$out"
stamp=$(date -u +%Y-%m-%dT%H%MZ)
report=$out/$stamp.md

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

echo "building..." >&2
cargo build --release --locked -q
# sqlx needs SQLite's column metadata, which .cargo/config.toml's
# LIBSQLITE3_FLAGS (gatehouse's trimmed SQLite) leaves out: not for the peer.
! wants axum || LIBSQLITE3_FLAGS= cargo build --release -q --manifest-path benches/peers/axum/Cargo.toml
! wants rouille-bare || cargo build --release -q --manifest-path benches/peers/rouille-bare/Cargo.toml
! $node_peers || (cd benches/peers/express && npm install --no-audit --no-fund --loglevel=error >/dev/null)

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# start NAME DIR CMD... : starts a server in DIR, waits for its URL.
start() {
    local name=$1 dir=$2; shift 2
    mkdir -p "$dir"
    (cd "$dir" && exec env PORT=0 "$@" >"$dir/out" 2>"$dir/err") &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$dir/out" | head -n 1)
        [ -n "$url" ] && break
        sleep 0.05
    done
    [ -n "$url" ] || { echo "$name did not start:"; cat "$dir/err"; exit 1; }
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# measure PEER ROUTE URL LUA [wrk args...]: one wrk run, one table row.
# The Lua script counts answers below 400 as served and the rest as errors
# (a login's 303 is a success; a 401, 429 or 503 is not).
measure() {
    local peer=$1 route=$2 url=$3 lua=$4; shift 4
    local before after res
    before=$(cpu_ticks "$pid")
    res=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$lua" "$@" "$url" 2>&1)
    after=$(cpu_ticks "$pid")
    local rps p50 p99 total errors cpu_us
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$res")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$res")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$res")
    total=$(awk '/requests in/ {print $1}' <<<"$res")
    last_ok=$(sed -n 's/^STATUS ok=\([0-9]*\) failed=.*/\1/p' <<<"$res")
    errors=$(sed -n 's/^STATUS ok=[0-9]* failed=\([0-9]*\).*/\1/p' <<<"$res")
    cpu_us=$(awk -v t=$((after - before)) -v n="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$peer" "$route" "$rps" "$p50" "$p99" "$cpu_us" "$errors"
}

# measure_login PEER URL LUA: CONNECTIONS clients signing in at once, each
# sending its next sign-in as soon as the last is answered, for DURATION
# seconds; one row: successful sign-ins per second, p50 and p99 latency,
# server CPU per attempt, and the attempts refused (503), otherwise failed
# and timed out. wrk's timeout is raised to 30 s so that a sign-in waiting
# its turn (up to login_queue_timeout, 10 s) is measured, not dropped.
measure_login() {
    local peer=$1 url=$2 lua=$3
    local before after res
    before=$(cpu_ticks "$pid")
    res=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s --latency -s "$lua" "$url" 2>&1)
    after=$(cpu_ticks "$pid")
    local p50 p99 total ok failed refused timeouts ok_per_s cpu_us
    p50=$(awk '$1 == "50%" {print $2}' <<<"$res")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$res")
    total=$(awk '/requests in/ {print $1}' <<<"$res")
    ok=$(sed -n 's/^STATUS ok=\([0-9]*\) .*/\1/p' <<<"$res")
    failed=$(sed -n 's/^STATUS ok=[0-9]* failed=\([0-9]*\).*/\1/p' <<<"$res")
    refused=$(sed -n 's/^STATUS .* refused=\([0-9]*\).*/\1/p' <<<"$res")
    timeouts=$(sed -n 's/.*Socket errors:.*timeout \([0-9]*\).*/\1/p' <<<"$res")
    ok_per_s=$(awk -v n="$ok" -v d="$DURATION" 'BEGIN { printf "%.1f", n / d }')
    cpu_us=$(awk -v t=$((after - before)) -v n="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
    printf '| %s | %s sign-ins at once (bcrypt 10), successful/s | %s | %s | %s | %s | refused (503): %s, other: %s, timed out: %s |\n' \
        "$peer" "$CONNECTIONS" "$ok_per_s" "$p50" "$p99" "$cpu_us" "$refused" "$((failed - refused))" "${timeouts:-0}"
}

# wrk script: optional method, body and cookie, plus the status tally.
lua() {
    local file=$1 method=${2:-GET} body=${3:-} cookie=${4:-}
    {
        printf 'wrk.method = "%s"\n' "$method"
        if [ -n "$body" ]; then
            printf 'wrk.body = "%s"\n' "$body"
            printf 'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        fi
        [ -z "$cookie" ] || printf 'wrk.headers["Cookie"] = "%s"\n' "$cookie"
        cat <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; failed = 0; refused = 0 end
function response(status, headers, body)
  if status < 400 then ok = ok + 1 else failed = failed + 1 end
  if status == 503 then refused = refused + 1 end
end
function done(summary, latency, requests)
  local o, f, r = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); f = f + t:get("failed"); r = r + t:get("refused")
  end
  io.write(string.format("STATUS ok=%d failed=%d refused=%d\n", o, f, r))
end
LUA
    } >"$file"
}

# session_cookie URL LOGIN_BODY [csrf cookie]: signs in, prints the Cookie header value.
session_cookie() {
    local url=$1 body=$2 extra=${3:-}
    curl -sk -o /dev/null -c "$work/jar" ${extra:+-H "Cookie: $extra"} --data "$body" "$url/login"
    # curl marks HttpOnly cookies with a "#HttpOnly_" prefix, not a comment.
    sed 's/^#HttpOnly_//' "$work/jar" | awk '!/^#/ && NF >= 7 && $6 != "gatehouse_csrf" {printf "%s=%s", $6, $7}' 
}

visits_of() { curl -sk -H "Cookie: $2" "$1/" | sed -n 's/.*[Vv]isits[^0-9]*\([0-9][0-9]*\).*/\1/p;s/.*id="visits">\([0-9]*\)<.*/\1/p' | head -n 1; }

# lost_increments URL COOKIE BEFORE: how many of the last run's 2xx loads did not count.
lost_increments() {
    local now; now=$(visits_of "$1" "$2")
    echo $(( ($3 + last_ok) - (now - 1) ))
}

run_peer() {
    local peer=$1 verify=$2 url=$3 cookie=$4 login_body=$5 login_cookie=${6:-}
    lua "$work/get.lua" GET "" "$cookie"
    measure "$peer" "who am I" "$url$verify" "$work/get.lua"
    if [ "$peer" != "rouille (bare)" ] && [ -z "${verify_only:-}" ]; then
        local before; before=$(visits_of "$url" "$cookie")
        measure "$peer" "visit counter" "$url/" "$work/get.lua"
        echo "| $peer | lost increments | $(lost_increments "$url" "$cookie" "$before") of $last_ok | | | | |"
        lua "$work/login.lua" POST "$login_body" "$login_cookie"
        measure_login "$peer" "$url/login" "$work/login.lua"
    fi
    echo "| $peer | peak RSS | $(( $(peak_rss_kb "$pid") / 1024 )) MiB | | | | |"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# run_gatehouse NAME DIR [VAR=value...]: gatehouse with these settings.
# With tls=1, gatehouse serves HTTPS itself with a self-signed certificate
# (DATA/tls/) and only "who am I" is measured (keep-alive, as wrk does).
run_gatehouse() {
    local name=$1 dir=$2; shift 2
    local settings=(GATEHOUSE_BCRYPT_COST=10 GATEHOUSE_LOGIN_MAX_FAILURES=1000000
        GATEHOUSE_SECRETS=benchmark-secret-of-at-least-32-bytes "$@")
    mkdir -p "$dir"
    printf 'correct horse\n' | env "${settings[@]}" target/release/gatehouse user add alice --password-stdin --data "$dir" >/dev/null
    if [ -n "${tls:-}" ]; then
        env "${settings[@]}" target/release/gatehouse tls self-signed --host localhost --data "$dir" >/dev/null
    fi
    start "$name" "$dir" env "${settings[@]}" "$root/target/release/gatehouse" serve --data "$dir" --listen 127.0.0.1:0
    url=${url%/}
    csrf_cookie=$(curl -sk -c - "$url/login" -o "$dir/login.html" | awk '$6 == "gatehouse_csrf" {print $6 "=" $7}')
    token=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$dir/login.html" | head -n 1)
    body="csrf=$token&username=alice&password=correct+horse"
    cookie=$(session_cookie "$url" "$body" "$csrf_cookie")
    run_peer "$name" /auth/verify "$url" "$cookie" "$body" "$csrf_cookie"
}

{
echo "# Benchmark run $stamp"
echo
echo "Machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo); $(uname -sr)."
echo "wrk -t2 -c$CONNECTIONS -d${DURATION}s on loopback, server and wrk on the same cores."
echo "Peers: $PEERS."
echo "Versions: gatehouse $(target/release/gatehouse --version | awk '{print $2}'),"
if $node_peers; then
    echo "node $(node --version),"
    echo "express $(node -p "require('./benches/peers/express/node_modules/express/package.json').version"),"
    echo "express-session $(node -p "require('./benches/peers/express/node_modules/express-session/package.json').version"),"
    echo "better-sqlite3 $(node -p "require('./benches/peers/express/node_modules/better-sqlite3/package.json').version"),"
fi
echo "tower-sessions $(grep -A1 'name = "tower-sessions"' benches/peers/axum/Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p'), rustc $(rustc --version | awk '{print $2}')."
echo "Release binary: target/release/gatehouse, $(stat -c %s target/release/gatehouse) bytes."
for sweep in $(seq "$sweeps"); do
    echo
    echo "## Sweep $sweep"
    echo
    echo "| peer | route | req/s | p50 | p99 | server CPU µs/req | errors (≥400) |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"

    ! wants gatehouse || run_gatehouse gatehouse "$work/gatehouse-$sweep"
    if wants gatehouse-https; then
        tls=1 verify_only=1 run_gatehouse "gatehouse (HTTPS)" "$work/gatehouse-https-$sweep"
    fi
    if wants gatehouse && [ -n "$PG" ]; then
        schema=gatehouse_bench_$sweep
        psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
        pg_url="$PG$(case $PG in *\?*) echo '&';; *) echo '?';; esac)options=-csearch_path%3D$schema"
        run_gatehouse "gatehouse (postgres)" "$work/gatehouse-pg-$sweep" \
            GATEHOUSE_DATABASE="$pg_url"
        if [ -n "$REDIS" ]; then
            psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
            run_gatehouse "gatehouse (postgres + redis)" "$work/gatehouse-redis-$sweep" \
                GATEHOUSE_DATABASE="$pg_url" GATEHOUSE_SESSION_STORE="$REDIS" \
                GATEHOUSE_STORE_PREFIX="gatehouse-bench-$stamp-$sweep:"
        fi
    fi

    for store in sqlite memory; do
        wants "express-$store" || continue
        dir=$work/express-$store-$sweep
        start "express ($store)" "$dir" env STORE=$store node "$root/benches/peers/express/app.js"
        body="username=alice&password=correct+horse"
        cookie=$(session_cookie "$url" "$body")
        run_peer "express-session ($store)" /whoami "$url" "$cookie" "$body"
    done

    if wants axum; then
        dir=$work/axum-$sweep
        start axum "$dir" "$root/benches/peers/axum/target/release/bench-axum"
        body="username=alice&password=correct+horse"
        cookie=$(session_cookie "$url" "$body")
        run_peer "axum + tower-sessions (sqlite)" /whoami "$url" "$cookie" "$body"
    fi

    if wants rouille-bare; then
        dir=$work/bare-$sweep
        start rouille "$dir" "$root/benches/peers/rouille-bare/target/release/bench-rouille-bare"
        run_peer "rouille (bare)" / "$url" "" ""
    fi
done
} | tee "$report"
echo "results: $report" >&2
