"""TLS to the upstream is verified: an upstream whose certificate nobody
vouches for is refused (502 naming it), never talked to."""

import http.server
import ssl
import subprocess
import threading

from harness import *


class _Handler(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_POST(self):
        _Handler.seen.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


def _self_signed_server(tmp):
    cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_tls_untrusted_upstream_certificate_refused(s):
    tmp = tempfile.mkdtemp(prefix="ccproxy-tls.")
    srv = _self_signed_server(tmp)
    try:
        port = srv.server_address[1]
        r = s.cgi("POST", "/v1/messages", api_headers(), message_body(),
                  env={"ANTHROPIC_BASE_URL": "https://127.0.0.1:%d" % port})
        obj = assert_anthropic_error(r, 502, "api_error")
        msg = obj["error"]["message"]
        check("127.0.0.1:%d" % port in msg, "502 should name the upstream: %r", msg)
        check("certificate" in msg.lower() or "ssl" in msg.lower(), "502 should say why (TLS): %r", msg)
        check(not _Handler.seen, "no request may reach an unverified upstream: %r", _Handler.seen)
    finally:
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
