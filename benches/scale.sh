#!/usr/bin/env bash
# Scale cases for gatehouse alone (release build, wrk on loopback):
#   1. /auth/verify with 1,000 vs 1,000,000 sessions in the database;
#   2. /auth/verify p99 before and while the reaper deletes 1,000,000
#      expired sessions;
#   3. /auth/verify p99 without and with a storm of 64 concurrent
#      wrong-password logins (bcrypt cost 10).
# Needs wrk, curl and sqlite3. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/release/gatehouse
D=${DURATION:-8}
cargo build --release --locked -q
work=$(mktemp -d)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

serve() { # DIR [env...]
    local dir=$1; shift
    env GATEHOUSE_LOGIN_MAX_FAILURES=1000000 "$@" "$bin" serve --listen 127.0.0.1:0 --data "$dir" >"$dir/out" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$dir/out"); [ -n "$url" ] && break; sleep 0.05; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
signin() { # prints the session cookie
    local jar=$work/jar csrf
    rm -f "$jar"
    csrf=$(curl -s -c "$jar" -b "$jar" "$url/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n 1)
    curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" --data-urlencode username=alice \
        --data-urlencode "password=correct horse" "$url/login"
    sed 's/^#HttpOnly_//' "$jar" | awk '$6 == "gatehouse_session" {print $6 "=" $7}'
}
verify() { # LABEL [wrk args]: one row
    local label=$1; shift
    local r; r=$(wrk -t2 -c"${C:-64}" -d"${D}s" --latency -H "Cookie: $cookie" "$@" "$url/auth/verify")
    printf '| %s | %s | %s | %s |\n' "$label" "$(awk '/Requests\/sec/ {print $2}' <<<"$r")" \
        "$(awk '$1 == "50%" {print $2}' <<<"$r")" "$(awk '$1 == "99%" {print $2}' <<<"$r")"
}
fill() { # DIR COUNT EXPIRED(0|1): insert sessions straight into the database
    local now; now=$(($(date +%s) * 1000))
    local exp=$((now + 3600000)); [ "$3" = 1 ] && exp=$((now - 1000))
    sqlite3 "$1/gatehouse.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
        INSERT INTO sessions (key, user_id, data, created_at, last_seen_at, expires_at, absolute_expires_at)
        SELECT randomblob(32), 1, '{}', $now, $now, $exp, $exp + 1 FROM n;"
}
setup() { # DIR
    mkdir -p "$1"
    printf 'correct horse\n' | GATEHOUSE_BCRYPT_COST=10 "$bin" user add alice --password-stdin --data "$1" >/dev/null
}

echo "| case | req/s | p50 | p99 |"
echo "| --- | --- | --- | --- |"
for n in 1000 1000000; do
    dir=$work/fill-$n; setup "$dir"; fill "$dir" "$n" 0
    serve "$dir"; cookie=$(signin)
    verify "/auth/verify, $n sessions stored"
    stop
done

dir=$work/reap; setup "$dir"; fill "$dir" 1000000 1
serve "$dir" GATEHOUSE_REAP_INTERVAL=$((D + 4))s; cookie=$(signin)
verify "/auth/verify before reaping 1,000,000 expired sessions"
sleep 3
before=$(sqlite3 "$dir/gatehouse.db" "SELECT count(*) FROM sessions")
verify "/auth/verify while the reaper deletes them"
after=$(sqlite3 "$dir/gatehouse.db" "SELECT count(*) FROM sessions")
echo "| (rows: $before when that run began, $after when it ended) | | | |"
stop

dir=$work/storm; setup "$dir"
serve "$dir" GATEHOUSE_BCRYPT_COST=10; cookie=$(signin)
C=32 verify "/auth/verify (32 connections), no storm"
csrf_cookie=$(awk '$6 == "gatehouse_csrf" {print $6 "=" $7}' "$work/jar")
token=${csrf_cookie#*=}; token=${token%%.*}
cat >"$work/storm.lua" <<LUA
wrk.method = "POST"
wrk.body = "csrf=$token&username=alice&password=wrong+password"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "$csrf_cookie"
LUA
wrk -t1 -c64 -d"$((D + 2))s" -s "$work/storm.lua" "$url/login" >"$work/storm.out" &
storm=$!
sleep 1
C=32 verify "/auth/verify (32 connections) during 64 concurrent wrong-password logins"
wait "$storm"
echo "| (the storm: $(awk '/Requests\/sec/ {print $2}' "$work/storm.out") logins/s, $(awk '/Non-2xx/ {print $5}' "$work/storm.out") non-2xx) | | | |"
stop
