#!/usr/bin/env python3
"""Instructions per request, counted by callgrind: a figure the shared machine's noise cannot move.

    benches/instructions.py GATEHOUSE_BIN [BARE_BIN]

(BARE_BIN: benches/peers/rouille-bare, `cargo build --release` there.)

Runs the server under `valgrind --tool=callgrind` twice, once answering N1 and once N2 keep-alive
requests on one connection, and reports (I(N2) - I(N1)) / (N2 - N1): start-up and shut-down cancel
out. gatehouse answers /auth/verify with a signed-in cookie; the bare rouille peer /whoami.
Prints one line per server; the last line is `gatehouse/bare instruction ratio X` (when both run).
"""
import json, os, re, signal, socket, subprocess, sys, tempfile, time, urllib.request

N1, N2 = 300, 1300


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_up(port, path, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return
        except Exception as e:
            if hasattr(e, "code"):
                return
            time.sleep(0.2)
    raise SystemExit(f"server on {port} did not answer {path}")


def hammer(port, path, n, cookie=None):
    """n GETs on one kept-alive connection, each answer read fully."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n"
    f = s.makefile("rb")
    ok = 0
    for _ in range(n):
        s.sendall(head.encode())
        status = f.readline()
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "content-length":
                length = int(v.strip())
        f.read(length)
        ok += status.split()[1] == b"200"
    s.close()
    return ok


def login(port):
    """Signs alice in through the JSON API: her session cookie (`name=value`)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/login",
                                 data=json.dumps({"username": "alice", "password": "correct horse battery"}).encode(),
                                 headers={"Content-Type": "application/json"})
    r = urllib.request.urlopen(req, timeout=30)
    return r.headers["Set-Cookie"].split(";")[0]


def strace_hammer(pid, out, port, path, n, cookie):
    """`hammer` under `strace -f -c -o out` attached to `pid`: the 200s, and the calls counted."""
    st = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    ok = hammer(port, path, n, cookie)
    time.sleep(0.3)
    st.send_signal(signal.SIGINT)
    st.wait(timeout=30)
    return ok, strace_calls(out)


def strace_calls(out):
    """The calls per system call name in an `strace -c -o out` summary."""
    calls = {}
    for line in open(out):
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
            calls[f[-1]] = int(f[3])
        elif len(f) >= 4 and f[-1].isidentifier() and f[2].isdigit():
            calls[f[-1]] = int(f[2])
    return calls


def callgrind_total(out):
    for line in open(out):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def run(cmd, env, port, path, n, cookie_fn=None):
    d = tempfile.mkdtemp()
    out = os.path.join(d, "cg.out")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(port, path if cookie_fn is None else "/healthz")
        cookie = cookie_fn(port) if cookie_fn else None
        ok = hammer(port, path, n, cookie)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()
    if ok != n:
        raise SystemExit(f"{ok} of {n} answers were 200")
    return callgrind_total(out)


def gatehouse(binary):
    data = tempfile.mkdtemp()
    env = dict(os.environ, GATEHOUSE_BCRYPT_COST="4")
    subprocess.run([binary, "user", "add", "alice", "--password-stdin", "--data", data], input="correct horse battery\n",
                   text=True, env=env, check=True, capture_output=True)

    totals = []
    for n in (N1, N2):
        port = free_port()
        totals.append(run([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data], env, port,
                          "/auth/verify", n, login))
    return (totals[1] - totals[0]) / (N2 - N1)


def bare(binary):
    totals = []
    for n in (N1, N2):
        port = free_port()
        env = dict(os.environ, PORT=str(port), POOL_SIZE="8")
        totals.append(run([binary], env, port, "/whoami", n))
    return (totals[1] - totals[0]) / (N2 - N1)


if __name__ == "__main__":
    g = gatehouse(sys.argv[1])
    print(f"gatehouse /auth/verify: {g:,.0f} instructions per request")
    if len(sys.argv) > 2:
        b = bare(sys.argv[2])
        print(f"bare rouille /whoami: {b:,.0f} instructions per request")
        print(f"gatehouse/bare instruction ratio {g / b:.2f}")
