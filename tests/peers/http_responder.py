"""The data plane behind a floating IP, played inside the gateway's network namespace: an Octavia
amphora and the echo pods cannot run here. It answers GET with the pod name the routing table
gives for the path (longest prefix first), as agnhost serve-hostname behind the load balancer would.

usage: http_responder.py ADDRESS PORT ROUTES_JSON   (ROUTES_JSON: {"/": "echo-5c7d9-ax0", ...})"""

import json
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

address, port, routes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        prefix = max((p for p in routes if self.path.startswith(p)), key=len, default=None)
        body = (routes[prefix] if prefix else "no route").encode()
        self.send_response(200 if prefix else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    def server_bind(self):  # no reverse DNS lookup of the address (HTTPServer's getfqdn): nothing leaves the netns
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


Server((address, port), Handler).serve_forever()
