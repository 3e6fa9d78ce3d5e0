#!/usr/bin/env python3
"""/auth/verify over HTTPS (gatehouse serving TLS itself, keep-alive) against plain HTTP, same binary,
alternating twice: wrk -t2 -c64 -d5s, requests/s and server CPU per request (from /proc/PID/stat).

    benches/https.py GATEHOUSE_BIN [OTHER_BIN...]
"""
import sys, os, json, subprocess, tempfile, signal, time, urllib.request, ssl, re
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as I
def run(binary, tls):
    data = tempfile.mkdtemp()
    env = dict(os.environ, GATEHOUSE_BCRYPT_COST="4")
    subprocess.run([binary, "user", "add", "alice", "--password-stdin", "--data", data], input="correct horse battery\n", text=True, env=env, check=True, capture_output=True)
    if tls:
        subprocess.run([binary, "tls", "self-signed", "--host", "localhost", "--data", data], env=env, check=True, capture_output=True)
    port = I.free_port()
    srv = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scheme = "https" if tls else "http"
    ctx = ssl._create_unverified_context()
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=2, context=ctx); break
            except Exception as e:
                if hasattr(e, "code"): break
                time.sleep(0.1)
        req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/api/login", data=json.dumps({"username": "alice", "password": "correct horse battery"}).encode(), headers={"Content-Type": "application/json"})
        cookie = urllib.request.urlopen(req, timeout=30, context=ctx).headers["Set-Cookie"].split(";")[0]
        def ticks():
            f = open(f"/proc/{srv.pid}/stat").read().split(")")[1].split()
            return int(f[11]) + int(f[12])
        t0 = ticks()
        out = subprocess.run(["wrk", "-t2", "-c64", "-d5s", "-H", f"Cookie: {cookie}", f"{scheme}://127.0.0.1:{port}/auth/verify"], capture_output=True, text=True).stdout
        t1 = ticks()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return rps, (t1 - t0) * 10000 / total, non2xx.group(1) if non2xx else "0"
    finally:
        srv.send_signal(signal.SIGTERM); srv.wait(timeout=30)
for b in sys.argv[1:]:
    for tls in (False, True, False, True):
        rps, us, bad = run(b, tls)
        print(f"{os.path.basename(b)} {'https' if tls else 'http '} {rps:9.0f} req/s  {us:6.1f} us CPU/req  non-2xx {bad}")
