#!/usr/bin/env python3
"""The OpenID Provider's request paths: authorize, the code exchange, refresh and userinfo.

    benches/oidc.py GATEHOUSE_BIN [--callgrind]

One release server (default bcrypt cost), one user signed in once, one confidential client
(`client_secret_basic`, secret given in gatehouse.toml, so checked by SHA-256; a bcrypt-hashed
secret costs one bcrypt per process, then the same). Each path on its own kept-alive connection,
ROUNDS rounds of N requests interleaved (authorize, code exchange, refresh, userinfo, ...) so the
machine's noise falls on all alike; prints requests per second (median round), the ratio to
`/auth/verify` with the session cookie in the same rounds, and p50/p99 latency. The code exchange uses the codes made by the authorize round before it (each code once,
as the specification requires); refresh follows its own chain (each answer's refresh token is the
next request's, as a client must after rotation). userinfo also runs under `wrk -t2 -c64` when
wrk is installed (one access token, 64 connections), as benches/run.sh runs `/auth/verify`.
With --callgrind, instructions per request for each path ((I(1300) - I(300)) / 1000, as in
instructions.py).
"""
import base64, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.parse, urllib.request

ROUNDS, N = 7, 500
PASSWORD = "correct horse battery"
SECRET = "bench-secret-0123456789-abcdefghijkl"
CB = "https://app.test/cb"
# The paths, in the order each round runs them; `verify` (the forward-auth check with the
# session cookie) is the same run's baseline.
ORDER = ("verify", "authorize", "code", "refresh", "userinfo")
BASIC = "Basic " + base64.b64encode(f"bench:{SECRET}".encode()).decode()


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
    """One kept-alive connection; `ask` sends a request and returns (status, headers, body)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")

    def ask(self, method, path, headers, body=b""):
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        self.s.sendall(head.encode() + b"\r\n" + body)
        status = int(self.f.readline().split()[1])
        got, length = {}, 0
        while True:
            line = self.f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            got[k.strip().lower()] = v.strip()
        length = int(got.get("content-length", "0"))
        return status, got, self.f.read(length)


def form(pairs):
    return urllib.parse.urlencode(pairs).encode()


class Paths:
    """The four requests, each on its own connection."""

    def __init__(self, port, cookie):
        self.cookie = cookie
        self.conns = {k: Conn(port) for k in ORDER}
        self.codes = []
        self.refresh_token = None
        self.access_token = None

    def authorize(self):
        q = urllib.parse.urlencode({"client_id": "bench", "response_type": "code",
                                    "scope": "openid profile email groups offline_access",
                                    "redirect_uri": CB, "state": "s", "nonce": "n"})
        status, h, _ = self.conns["authorize"].ask("GET", f"/oidc/authorize?{q}", [("Cookie", self.cookie)])
        loc = h.get("location", "")
        m = re.search(r"[?&]code=([^&]+)", loc)
        if status not in (302, 303) or not m:
            raise SystemExit(f"authorize: {status} {loc}")
        self.codes.append(urllib.parse.unquote(m.group(1)))

    def code(self):
        body = form({"grant_type": "authorization_code", "code": self.codes.pop(), "redirect_uri": CB})
        tokens = self._token("code", body)
        self.refresh_token = self.refresh_token or tokens["refresh_token"]
        self.access_token = self.access_token or tokens["access_token"]

    def refresh(self):
        body = form({"grant_type": "refresh_token", "refresh_token": self.refresh_token})
        self.refresh_token = self._token("refresh", body)["refresh_token"]

    def verify(self):
        status, _, _ = self.conns["verify"].ask("GET", "/auth/verify", [("Cookie", self.cookie)])
        if status != 200:
            raise SystemExit(f"verify: {status}")

    def userinfo(self):
        status, _, body = self.conns["userinfo"].ask("GET", "/oidc/userinfo",
                                                     [("Authorization", f"Bearer {self.access_token}")])
        if status != 200:
            raise SystemExit(f"userinfo: {status} {body!r}")

    def _token(self, conn, body):
        status, _, got = self.conns[conn].ask(
            "POST", "/oidc/token",
            [("Authorization", BASIC), ("Content-Type", "application/x-www-form-urlencoded")], body)
        if status != 200:
            raise SystemExit(f"token ({conn}): {status} {got!r}")
        return json.loads(got)


def setup(binary, port):
    data = tempfile.mkdtemp()
    with open(os.path.join(data, "gatehouse.toml"), "w") as f:
        f.write(f'public_url = "http://127.0.0.1:{port}"\n\n[[clients]]\nid = "bench"\nname = "Bench"\n'
                f'secret = "{SECRET}"\nredirect_uris = ["{CB}"]\noffline_access = true\n')
    subprocess.run([binary, "user", "add", "alice", "--password-stdin", "--data", data], input=PASSWORD + "\n",
                   text=True, check=True, capture_output=True)
    return data


def login(port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/login",
                                 data=json.dumps({"username": "alice", "password": PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=60).headers["Set-Cookie"].split(";")[0]


def serve(binary, data, port, wrap=()):
    return subprocess.Popen([*wrap, binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()




def wall(binary):
    port = free_port()
    data = setup(binary, port)
    p = serve(binary, data, port)
    try:
        wait_up(port)
        paths = Paths(port, login(port))
        paths.authorize(); paths.code()
        rates = {k: [] for k in ORDER}
        lat = {k: [] for k in ORDER}
        for _ in range(ROUNDS):
            for k in ORDER:
                one = getattr(paths, k)
                start = time.perf_counter()
                for _ in range(N):
                    t = time.perf_counter(); one(); lat[k].append(time.perf_counter() - t)
                rates[k].append(N / (time.perf_counter() - start))
        wrk = wrk_userinfo(port, paths.access_token)
    finally:
        stop(p)
        shutil.rmtree(data, ignore_errors=True)
    base = statistics.median(rates["verify"])
    print("| path | req/s (one connection) | vs verify | p50 | p99 |")
    print("| --- | --: | --: | --: | --: |")
    for k in ORDER:
        xs = sorted(lat[k])
        rate = statistics.median(rates[k])
        print(f"| {k} | {rate:,.0f} | {rate / base:.2f}x | {xs[len(xs) // 2] * 1e6:.0f} µs "
              f"| {xs[int(len(xs) * 0.99)] * 1e6:.0f} µs |")
    if wrk:
        print(f"\nuserinfo under wrk -t2 -c64 (5 s): {wrk}")


def wrk_userinfo(port, token):
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t2", "-c64", "-d5s", "-H", f"Authorization: Bearer {token}",
                          f"http://127.0.0.1:{port}/oidc/userinfo"], capture_output=True, text=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return f"{float(rate.group(1)):,.0f} req/s, {bad.group(1) if bad else 0} answers >= 400" if rate else out


def instructions(binary):
    """(I(1300) - I(300)) / 1000 per path, each path alone under callgrind."""
    found = {}
    # One data directory, started once before the runs: the signing key is
    # made (a random prime search, billions of instructions) on the first
    # start, and only read on the ones counted.
    port = free_port()
    data = setup(binary, port)
    p = serve(binary, data, port)
    try:
        wait_up(port)
    finally:
        stop(p)
    for k in ORDER:
        counts = []
        for n in (300, 1300):
            out = os.path.join(data, "cg.out")
            p = serve(binary, data, port, wrap=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
            try:
                wait_up(port, timeout=300)
                paths = Paths(port, login(port))
                paths.authorize(); paths.code()
                one = getattr(paths, k)
                for _ in range(n):
                    if k == "code":
                        # Each code is made just before it is used (a code
                        # lasts under a minute; callgrind is slow).
                        paths.authorize()
                    one()
            finally:
                stop(p)
            with open(out) as f:
                total = next(int(l.split()[1]) for l in f if l.startswith("summary:") or l.startswith("totals:"))
            # The authorize requests made to feed the code exchange are counted in both runs
            # in proportion; subtract them with the authorize path's own figure below.
            counts.append(total)
            os.remove(out)
        found[k] = (counts[1] - counts[0]) / 1000
    shutil.rmtree(data, ignore_errors=True)
    # The code runs also made one authorize per code.
    found["code"] -= found["authorize"]
    print("\n| path | instructions per request |\n| --- | --: |")
    for k in ORDER:
        print(f"| {k} | {found[k]:,.0f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    wall(sys.argv[1])
    if "--callgrind" in sys.argv:
        instructions(sys.argv[1])
