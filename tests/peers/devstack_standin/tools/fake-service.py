"""A devstack@<svc> stand-in: answers GET / with 200, or, when $DEST/.standin-hang-<svc> exists,
never answers (the hung g-api of the 2018 write-up). Upstream, each devstack@<svc> unit is a
service DevStack's functions-common run_process writes; osk8s asks it only for its HTTP answer."""

import http.server
import os
import socketserver
import sys
import time

name, port, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# Hung only while the flag exists: the flag is consumed here, so a restart comes back healthy.
flag = os.path.join(dest, f".standin-hang-{name}")
hang = os.path.exists(flag)
if hang:
    os.unlink(flag)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if hang:
            time.sleep(3600)
        body = f'{{"service": "{name}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):  # as HTTPServer's, without its reverse DNS look-up of the bound address
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


Server(("0.0.0.0", port), Handler).serve_forever()
