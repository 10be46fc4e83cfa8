# The attack suite's "internet": records everything that reaches it, as JSON lines on stdout.
# HTTPS on 443 (each parsed request: method, path, every header, body; chunked bodies decoded;
# a WebSocket upgrade is accepted and each message it then carries recorded as kind 'ws';
# a connection whose first bytes are not TLS is recorded raw), and raw listeners on TCP 22, 53,
# 80, 8080, 9418 and UDP 53 that record whatever arrives. CERT and KEY (PEM) come from the env.
import base64, hashlib, http.server, json, os, socket, socketserver, ssl, struct, threading

open('/tmp/c.pem', 'w').write(os.environ['CERT'])
open('/tmp/k.pem', 'w').write(os.environ['KEY'])
lock = threading.Lock()


def record(**fields):
    with lock:
        print(json.dumps(fields), flush=True)


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def body(self):
        if 'chunked' in (self.headers.get('transfer-encoding') or '').lower():
            out = b''
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get('content-length') or 0)
        return self.rfile.read(n) if n > 0 else b''

    def websocket(self):
        key = self.headers.get('sec-websocket-key', '')
        accept = base64.b64encode(hashlib.sha1(
            (key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').encode()).digest()).decode()
        self.send_response(101)
        self.send_header('upgrade', 'websocket')
        self.send_header('connection', 'Upgrade')
        self.send_header('sec-websocket-accept', accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            op, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack('>H', self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack('>Q', self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b'\0\0\0\0'
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if op == 8:
                return
            record(kind='ws', path=self.path, data=data.decode('utf-8', 'replace'))
            # Echo it back, unmasked, so a client sees its message arrived.
            self.wfile.write(bytes([0x81, len(data)]) + data if len(data) < 126 else b'')
            self.wfile.flush()

    def handle_any(self):
        if (self.headers.get('upgrade') or '').lower() == 'websocket':
            record(kind='http', method=self.command, path=self.path,
                   headers=[[k, v] for k, v in self.headers.items()], body='')
            return self.websocket()
        body = self.body()
        record(kind='http', method=self.command, path=self.path,
               headers=[[k, v] for k, v in self.headers.items()],
               body=body.decode('utf-8', 'replace'))
        out = b'hello from witness\n'
        self.send_response(200)
        self.send_header('content-type', 'text/plain')
        self.send_header('content-length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = handle_any

    def log_message(self, *a):
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain('/tmp/c.pem', '/tmp/k.pem')


class TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        # Runs on the connection's own thread: peek, then either record raw bytes or speak TLS.
        request.settimeout(10)
        try:
            first = request.recv(4096, socket.MSG_PEEK)
        except OSError:
            first = b''
        if first and first[0] != 0x16:
            record(kind='raw', port=443, data=first.decode('latin-1'))
            request.close()
            return
        try:
            tls = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            record(kind='tls-error', port=443, error=str(e))
            return
        self.RequestHandlerClass(tls, client_address, self)


class Raw(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        try:
            data = self.request.recv(65536)
        except OSError:
            data = b''
        record(kind='tcp', port=self.server.server_address[1], data=data.decode('latin-1'))


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        record(kind='udp', port=self.server.server_address[1],
               data=self.request[0].decode('latin-1'))


class ThreadingTcp(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


for port in (22, 53, 80, 8080, 9418):
    threading.Thread(target=ThreadingTcp(('0.0.0.0', port), Raw).serve_forever, daemon=True).start()
threading.Thread(target=socketserver.UDPServer(('0.0.0.0', 53), Udp).serve_forever, daemon=True).start()
record(kind='ready')
TlsServer(('0.0.0.0', 443), H).serve_forever()
