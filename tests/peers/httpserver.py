"""The HTTP server of the test peers: http.server's own, less its look-up of the bound address.

HTTPServer.server_bind asks socket.getfqdn() for the address it bound. For an address in a test
namespace (a node's, a floating IP) that is a reverse DNS query to the machine's resolver: traffic
that must never leave the namespaces the tests create, and a hang where no resolver answers."""

from __future__ import annotations

import http.server
import socketserver


class QuietHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # bind (and SO_REUSEADDR when asked), as HTTPServer does
        self.server_name, self.server_port = self.server_address[:2]  # the address itself: no getfqdn()
