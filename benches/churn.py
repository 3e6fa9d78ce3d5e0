#!/usr/bin/env python3
"""Threads created and system calls made per signed-in /auth/verify on one kept-alive connection,
and the server's threads and memory at idle and under load.

    benches/churn.py GATEHOUSE_BIN

Warms up with 100 requests, then counts (strace -f -c, attached to the running server) over 2,000
more. Prints `clone3/clone per 2000 requests N; non-futex syscalls per request X`. Then, with wrk
installed, runs `wrk -t2 -c64 -d5s` on /auth/verify (signed in) and prints the threads (from
/proc/PID/task) at idle, right after the run and 6 s later, and the RSS at idle and at its peak.
"""
import os, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as I

binary = sys.argv[1]
data = tempfile.mkdtemp()
env = dict(os.environ, GATEHOUSE_BCRYPT_COST="4")
subprocess.run([binary, "user", "add", "alice", "--password-stdin", "--data", data], input="correct horse battery\n",
               text=True, env=env, check=True, capture_output=True)
port = I.free_port()
srv = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
out = os.path.join(data, "strace.txt")
try:
    I.wait_up(port, "/healthz")
    cookie = I.login(port)
    I.hammer(port, "/auth/verify", 100, cookie)
    idle_threads = len(os.listdir(f"/proc/{srv.pid}/task"))
    n = 2000
    ok, calls = I.strace_hammer(srv.pid, out, port, "/auth/verify", n, cookie)
    time.sleep(1.0)

    def status(key):
        for line in open(f"/proc/{srv.pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    idle_rss = status("VmRSS")
    load = None
    if subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True).returncode == 0:
        subprocess.run(["wrk", "-t2", "-c64", "-d5s", "-H", f"Cookie: {cookie}",
                        f"http://127.0.0.1:{port}/auth/verify"], capture_output=True, check=True)
        after = len(os.listdir(f"/proc/{srv.pid}/task"))
        time.sleep(6.0)
        later = len(os.listdir(f"/proc/{srv.pid}/task"))
        load = (after, later, status("VmHWM"))
finally:
    srv.send_signal(signal.SIGTERM)
    try:
        srv.wait(timeout=30)
    except subprocess.TimeoutExpired:
        srv.kill()
threads = calls.get("clone3", 0) + calls.get("clone", 0)
other = sum(v for k, v in calls.items() if k not in ("futex", "total"))
top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if k != "total")
print(f"{ok} of {n} answered 200; calls: {top}")
print(f"clone3/clone per {n} requests {threads}; non-futex syscalls per request {other / n:.2f}")
print(f"threads at idle {idle_threads}; idle RSS {idle_rss / 1024:.1f} MiB")
if load:
    print(f"after wrk -c64 on /auth/verify: threads {load[0]}, 6 s later {load[1]}; peak RSS {load[2] / 1024:.1f} MiB")
