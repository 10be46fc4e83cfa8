# The "internet" of bot-bottle's demo and end-to-end suite: an HTTPS server that logs every
# request it receives as one JSON line on stdout and answers 200 "hello from upstream".
# CERT and KEY (PEM) come from the environment.
import http.server, json, os, ssl
open('/tmp/c.pem', 'w').write(os.environ['CERT'])
open('/tmp/k.pem', 'w').write(os.environ['KEY'])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def handle_any(self):
        n = int(self.headers.get('content-length') or 0)
        body = self.rfile.read(n) if n else b''
        print(json.dumps({'method': self.command, 'path': self.path,
                          'host': self.headers.get('host'),
                          'authorization': self.headers.get('authorization'),
                          'body': body.decode('utf-8', 'replace')}), flush=True)
        out = b'hello from upstream\n'
        self.send_response(200)
        self.send_header('content-type', 'text/plain')
        self.send_header('content-length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_HEAD = handle_any
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain('/tmp/c.pem', '/tmp/k.pem')
srv = http.server.ThreadingHTTPServer(('0.0.0.0', 443), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
