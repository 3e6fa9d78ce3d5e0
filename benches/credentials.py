#!/usr/bin/env python3
"""/auth/verify with a Bearer token and with a cached Basic password, against the cookie, in one run.

    benches/credentials.py GATEHOUSE_BIN [--callgrind]

One server (the release binary, default bcrypt cost), one user, a token and an app with
`basic_auth = "password"` (reached with `Host: files.lan`). For each credential, on its own
kept-alive connection, ROUNDS rounds of N requests interleaved (cookie, bearer, basic, cookie, ...)
so the machine's noise falls on all three alike; prints requests per second (median round), the
ratio to the cookie's, and p50/p99 latency. The first Basic request of the run is timed alone: it
pays the one bcrypt, the rest none. With --callgrind, also instructions per request for each
(callgrind, (I(1300) - I(300)) / 1000 as in instructions.py).
"""
import base64, json, os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROUNDS, N = 7, 2000
PASSWORD = "correct horse battery"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_up(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit("server did not start")


class Conn:
    def __init__(self, port, headers):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")
        self.head = (f"GET /auth/verify HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode()

    def one(self):
        self.s.sendall(self.head)
        status = self.f.readline()
        length = 0
        while True:
            line = self.f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "content-length":
                length = int(v.strip())
        self.f.read(length)
        if status.split()[1] != b"200":
            raise SystemExit(f"answer {status!r}")


def setup(binary):
    data = tempfile.mkdtemp()
    with open(os.path.join(data, "gatehouse.toml"), "w") as f:
        f.write('[[apps]]\nname = "files"\nhost = "files.lan"\nbasic_auth = "password"\n')
    subprocess.run([binary, "user", "add", "alice", "--password-stdin", "--data", data], input=PASSWORD + "\n",
                   text=True, check=True, capture_output=True)
    token = subprocess.run([binary, "token", "create", "alice", "--name", "bench", "--data", data],
                           text=True, check=True, capture_output=True).stdout.strip()
    return data, token


def login(port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/login",
                                 data=json.dumps({"username": "alice", "password": PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=60).headers["Set-Cookie"].split(";")[0]


def kinds(port, token):
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    host = [("Host", "files.lan")]
    return {
        "cookie": host + [("Cookie", login(port))],
        "bearer": host + [("Authorization", f"Bearer {token}")],
        "basic": host + [("Authorization", f"Basic {basic}")],
    }


def serve(binary, data, port, wrap=()):
    return subprocess.Popen([*wrap, binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()


def wall(binary):
    data, token = setup(binary)
    port = free_port()
    p = serve(binary, data, port)
    try:
        wait_up(port)
        headers = kinds(port, token)
        conns = {k: Conn(port, h) for k, h in headers.items()}
        t = time.perf_counter(); conns["basic"].one(); first_basic = time.perf_counter() - t
        t = time.perf_counter(); conns["basic"].one(); second_basic = time.perf_counter() - t
        rates = {k: [] for k in conns}
        lat = {k: [] for k in conns}
        for _ in range(ROUNDS):
            for k, c in conns.items():
                start = time.perf_counter()
                for _ in range(N):
                    t = time.perf_counter(); c.one(); lat[k].append(time.perf_counter() - t)
                rates[k].append(N / (time.perf_counter() - start))
    finally:
        stop(p)
    base = statistics.median(rates["cookie"])
    for k in conns:
        r = statistics.median(rates[k])
        ls = sorted(lat[k])
        p50, p99 = ls[len(ls) // 2] * 1e6, ls[int(len(ls) * 0.99)] * 1e6
        print(f"{k:7} {r:8,.0f} req/s  {r / base:4.2f}x cookie  p50 {p50:6.0f} us  p99 {p99:6.0f} us")
    print(f"first Basic request (one bcrypt): {first_basic * 1e3:.1f} ms; the next: {second_basic * 1e6:.0f} us")


def callgrind(binary):
    data, token = setup(binary)
    for k in ("cookie", "bearer", "basic"):
        ts = []
        for n in (300, 1300):
            port = free_port()
            out = os.path.join(tempfile.mkdtemp(), "cg.out")
            p = serve(binary, data, port, ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
            try:
                wait_up(port)
                c = Conn(port, kinds(port, token)[k])
                c.one()  # Basic pays its one bcrypt here, in both runs alike
                for _ in range(n):
                    c.one()
            finally:
                stop(p)
            ts.append(total(out))
        print(f"{k}: {(ts[1] - ts[0]) / 1000:,.0f} instructions per request")


def total(out):
    for line in open(out):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


if __name__ == "__main__":
    wall(sys.argv[1])
    if "--callgrind" in sys.argv:
        callgrind(sys.argv[1])
