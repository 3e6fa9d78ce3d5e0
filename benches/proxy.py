#!/usr/bin/env python3
"""The built-in proxy's request path: a signed-in GET of a small page under an app's prefix,
kept alive on both sides, against /auth/verify on the same server in the same run.

    benches/proxy.py GATEHOUSE_BIN UPSTREAM_BIN

gatehouse runs with threads = 192, so that one user's 64 connections are not refused by the
proxy's cap on one user's requests waiting on upstreams (3/8 of `threads`). UPSTREAM_BIN is the bare rouille peer (benches/peers/rouille-bare, which answers "ok" to
everything); it listens on PORT. Prints, for `wrk -t2 -c16 -d5s` (CONNECTIONS) on each path, twice
alternating: requests/s and gatehouse's CPU per request (from /proc/PID/stat); then, with strace,
the system calls gatehouse makes per proxied request over 1,000 on one kept-alive connection.
"""
import os, signal, subprocess, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as I

binary, upstream_bin = sys.argv[1], sys.argv[2]
up_port = I.free_port()
up = subprocess.Popen([upstream_bin], env=dict(os.environ, PORT=str(up_port), THREADS="8"),
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
data = tempfile.mkdtemp()
config = os.path.join(data, "gatehouse.toml")
with open(config, "w") as f:
    f.write(f'[[apps]]\nname = "bare"\nprefix = "/apps/bare/"\nupstream = "http://127.0.0.1:{up_port}"\n')
# One user on 64 connections: with the default threads (8 a core) the proxy lets one user wait on
# upstreams with at most 3/8 of `threads` requests at once (the rest get 429); 192 threads let 72.
env = dict(os.environ, GATEHOUSE_BCRYPT_COST="4", GATEHOUSE_CONFIG=config, GATEHOUSE_LOG_REQUESTS="false",
           GATEHOUSE_THREADS="192")
subprocess.run([binary, "user", "add", "alice", "--password-stdin", "--data", data], input="correct horse battery\n",
               text=True, env=env, check=True, capture_output=True)
port = I.free_port()
srv = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ticks():
    f = open(f"/proc/{srv.pid}/stat").read().split(")")[1].split()
    return int(f[11]) + int(f[12])


# The proxy keeps at most 32 idle connections to an upstream: more clients at once than that and
# upstream connections are made and dropped as the load shifts. 16 is a busy small office.
CONNECTIONS = os.environ.get("CONNECTIONS", "16")


def wrk(path, cookie):
    t0 = ticks()
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", "-d5s", "-H", f"Cookie: {cookie}", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    used = (ticks() - t0) / os.sysconf("SC_CLK_TCK")
    total = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
    rate = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    errors = [l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    return rate, used / total * 1e6, errors


try:
    I.wait_up(up_port, "/")
    I.wait_up(port, "/healthz")
    cookie = I.login(port)
    assert I.hammer(port, "/apps/bare/page", 100, cookie) == 100, "the proxied page did not answer 200"
    print("| path | req/s | gatehouse CPU µs/req | errors |")
    print("| --- | --: | --: | --- |")
    for _ in range(2):
        for path in ("/auth/verify", "/apps/bare/page"):
            rate, cpu, errors = wrk(path, cookie)
            print(f"| {path} | {rate:,.0f} | {cpu:.1f} | {'; '.join(errors) or 'none'} |")
    out = os.path.join(data, "strace.txt")
    n = 1000
    ok, calls = I.strace_hammer(srv.pid, out, port, "/apps/bare/page", n, cookie)
finally:
    srv.send_signal(signal.SIGTERM)
    up.kill()
    try:
        srv.wait(timeout=30)
    except subprocess.TimeoutExpired:
        srv.kill()
per = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if k != "total")
print(f"{ok} of {n} proxied requests answered 200; system calls per proxied request: {per}")
