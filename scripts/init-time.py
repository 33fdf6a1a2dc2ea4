"""Cold init time of a Lambda binary, measured locally: the time from
starting the process to its first `GET /runtime/invocation/next` on a fake
Runtime API (the moment Lambda would hand it an event). Median of N starts.

Usage: python3 scripts/init-time.py BINARY [RUNS] [ENV=VALUE ...]
"""
import http.server
import os
import statistics
import subprocess
import sys
import threading
import time

binary = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
extra = dict(kv.split("=", 1) for kv in sys.argv[3:])
asked = threading.Event()


class Runtime(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            asked.set()
        time.sleep(5)  # hold the request: no event comes

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
threading.Thread(target=server.serve_forever, daemon=True).start()
env = {
    "PATH": os.environ.get("PATH", ""),
    "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
    "AWS_LAMBDA_FUNCTION_NAME": "init-time",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/init-time",
    "AWS_LAMBDA_LOG_STREAM_NAME": "local",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    **extra,
}
times = []
for _ in range(runs):
    asked.clear()
    start = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not asked.wait(10):
        p.kill()
        sys.exit(f"{binary} never asked for an event (exit code {p.poll()})")
    times.append((time.perf_counter() - start) * 1000)
    p.kill()
    p.wait()
print(f"{os.path.basename(binary)}: init {statistics.median(times):.1f} ms median, "
      f"{min(times):.1f}-{max(times):.1f} ms over {runs} starts")
