//! Egress proxy benchmark: requests/s with 1 and 8 keep-alive clients, added latency per request
//! and peak RSS, for a direct connection, through `bb-sidecar`, and through `mitmdump` with a
//! minimal allowlist + header-injection addon, all against one local HTTPS upstream.
//!
//! Also: a copying CONNECT tunnel (the floor for any proxy on this machine), and for model
//! streams over HTTP/1.1 and HTTP/2, each event's delay from its send to its receipt, and the
//! sidecar's resident memory before and after the load.
//!
//! `cargo bench -p bb-sidecar --bench egress [-- --seconds N] [-- --mitmdump PATH]
//! [-- --sidecar PATH] [-- --requests-only]` (`hack/bench-egress.sh` installs mitmproxy from
//! PyPI and passes it; `--sidecar` runs another build, the "before" of an A/B run).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
#[path = "../tests/common/tls.rs"]
mod tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "bench-upstream-token-0123456789";

/// The upstreams' CA, written to `dir`: its certificate, key and path.
fn upstream_ca(dir: &Path) -> (rcgen::Certificate, rcgen::KeyPair, PathBuf) {
    let (ca_cert, ca_key) = tls::ca("bench upstream CA");
    let ca_path = dir.join("upstream-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write");
    (ca_cert, ca_key, ca_path)
}

/// An HTTPS upstream on 127.0.0.1 offering `alpn` (HTTP/1.1 or HTTP/2), answering every request
/// with a small body and `/sse`, `/sse-paced` with event streams.
fn start_upstream(
    rt: &tokio::runtime::Runtime,
    ca: &(rcgen::Certificate, rcgen::KeyPair, PathBuf),
    alpn: &[u8],
) -> u16 {
    let acceptor = tls::acceptor(&ca.0, &ca.1, &["localhost"], &[alpn]);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // As real servers do: without it, Nagle holds each small SSE event for an ACK.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/sse" {
                            return Ok::<_, std::convert::Infallible>(http::Response::new(
                                sse_body(SSE_EVENTS, SSE_GAP),
                            ));
                        }
                        if req.uri().path() == "/sse-paced" {
                            return Ok::<_, std::convert::Infallible>(http::Response::new(
                                sse_body(PACED_EVENTS, PACED_GAP),
                            ));
                        }
                        let authed = req.headers().contains_key("authorization");
                        let _ = req.into_body().collect().await;
                        let body = if authed { "ok authed\n" } else { "ok\n" };
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            Full::new(Bytes::from(body)).boxed(),
                        ))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

/// The floor for any proxy here: a CONNECT tunnel that copies bytes and judges nothing (TLS
/// goes end to end to the upstream), on plain threads. Returns its port.
fn start_copying_tunnel() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for agent in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = agent.set_nodelay(true);
                let mut reader = BufReader::new(agent.try_clone().expect("clone"));
                let mut line = String::new();
                let mut target = None;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    target = target.or_else(|| line.split_whitespace().nth(1).map(String::from));
                    line.clear();
                }
                let Some(up) = target.and_then(|t| TcpStream::connect(t).ok()) else {
                    return;
                };
                let _ = up.set_nodelay(true);
                let mut agent_w = agent;
                if agent_w
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                let (mut up_r, mut up_w) = (up.try_clone().expect("clone"), up);
                std::thread::spawn(move || std::io::copy(&mut up_r, &mut agent_w));
                let _ = std::io::copy(&mut reader, &mut up_w);
            });
        }
    });
    port
}

/// Events in the streamed response, and the pause between them (a model streaming tokens).
const SSE_EVENTS: usize = 50;
const SSE_GAP: Duration = Duration::from_millis(2);
/// A slower model: events 50 ms apart.
const PACED_EVENTS: usize = 20;
const PACED_GAP: Duration = Duration::from_millis(50);

/// Microseconds since the bench started: the clock events are stamped with when sent (upstream
/// and client share this process).
fn now_us() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A chunked `text/event-stream` body: `events` events `gap` apart, each stamped `"sent":<us>`.
fn sse_body(events: usize, gap: Duration) -> UpBody {
    struct Events(tokio::sync::mpsc::Receiver<Bytes>);
    impl http_body::Body for Events {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for i in 0..events {
            let event = format!(
                "id: {i}\nevent: delta\ndata: {{\"text\":\"token {i} of the answer\",\"sent\":{}}}\n\n",
                now_us()
            );
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
    Events(rx).boxed()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's resident set (`VmRSS:`) or its peak (`VmHWM:`), in MiB.
fn rss_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// How a client reaches the upstream.
#[derive(Clone)]
struct Route {
    proxy: Option<u16>,
    trust: PathBuf,
    /// The client speaks HTTP/2 (else HTTP/1.1).
    http2: bool,
}

/// One kept-alive connection, by the protocol the route's client speaks.
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    /// GET `path` of the upstream on `port`, once the connection can take it.
    async fn get(
        &mut self,
        port: u16,
        path: &str,
        auth: bool,
    ) -> http::Response<hyper::body::Incoming> {
        let mut req = http::Request::get(format!("https://localhost:{port}{path}"));
        if auth {
            req = req.header("authorization", "Bearer egress-placeholder");
        }
        match self {
            Sender::Http1(s) => {
                s.ready().await.expect("connection ready");
                let req = req.header("host", format!("localhost:{port}"));
                s.send_request(req.body(Empty::new()).expect("request"))
                    .await
                    .expect("response")
            }
            Sender::Http2(s) => {
                s.ready().await.expect("connection ready");
                s.send_request(req.body(Empty::new()).expect("request"))
                    .await
                    .expect("response")
            }
        }
    }
}

/// One kept-alive connection to the upstream, through the route's proxy if it has one.
async fn connect(route: &Route, upstream: u16) -> Sender {
    let addr = route.proxy.unwrap_or(upstream);
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", addr))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    if route.proxy.is_some() {
        let connect =
            format!("CONNECT localhost:{upstream} HTTP/1.1\r\nHost: localhost:{upstream}\r\n\r\n");
        tcp.write_all(connect.as_bytes()).await.expect("CONNECT");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut b).await.expect("CONNECT reply");
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut cfg = (*tls::client_trusting(&route.trust)).clone();
    if route.http2 {
        cfg.alpn_protocols = vec![b"h2".to_vec()];
    }
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS");
    if route.http2 {
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        return Sender::Http2(send);
    }
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    Sender::Http1(send)
}

async fn client(route: Route, upstream: u16, until: Instant, latencies: &mut Vec<u32>) {
    let mut send = connect(&route, upstream).await;
    while Instant::now() < until {
        let t = Instant::now();
        let resp = send.get(upstream, "/v1/items", true).await;
        assert!(resp.status().is_success(), "status {}", resp.status());
        let _ = resp.into_body().collect().await.expect("body");
        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
}

/// Per streamed response: time to first and to last body byte, and each event's delay from
/// its send to its arrival, all in microseconds.
#[derive(Default)]
struct StreamTimes {
    first: Vec<u32>,
    last: Vec<u32>,
    events: Vec<u32>,
}

/// The stamps (`"sent":<us>`) of the events in one received chunk.
fn stamps(chunk: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(chunk)
        .split("\"sent\":")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// `path` streamed `runs` times on one kept-alive connection.
async fn stream_latency(route: Route, upstream: u16, path: &str, runs: usize) -> StreamTimes {
    let mut send = connect(&route, upstream).await;
    let mut times = StreamTimes::default();
    let StreamTimes {
        first,
        last,
        events,
    } = &mut times;
    for _ in 0..runs {
        let t = Instant::now();
        let resp = send.get(upstream, path, false).await;
        let mut body = resp.into_body();
        let mut seen_first = false;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.expect("frame").into_data() else {
                continue;
            };
            let arrived = now_us();
            events.extend(
                stamps(&data)
                    .into_iter()
                    .map(|sent| u32::try_from(arrived.saturating_sub(sent)).unwrap_or(u32::MAX)),
            );
            if !seen_first {
                first.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                seen_first = true;
            }
        }
        last.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    for v in [&mut times.first, &mut times.last, &mut times.events] {
        v.sort_unstable();
    }
    times
}

/// The `q` quantile (0..=1) of sorted `v`.
fn quantile(v: &[u32], q: f64) -> u32 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Outbound DLP throughput (every detector, every decoded view) over a 64 MiB body scanned as
/// a stream is: 16 KiB chunks behind the 512-byte hold-back. MB/s.
fn dlp_throughput(body: &[u8]) -> f64 {
    let d = bb_sidecar::dlp::Detectors::new(&[bb_sidecar::needles::Needle::own(TOKEN)]);
    let mut h = bb_sidecar::dlp::Holdback::default();
    let t = Instant::now();
    for chunk in body.chunks(16 * 1024) {
        let buf = h.push(chunk);
        assert!(d.outbound(&buf, true, true).is_none(), "clean body flagged");
        let _ = h.release(buf, bb_sidecar::dlp::OVERLAP);
    }
    body.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
}

/// 64 MiB of what agents send: JSON chat requests with code and prose.
fn plain_body() -> Vec<u8> {
    let unit = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Fix the failing test in src/parser.rs: the tokenizer drops the last line when the file has no trailing newline.\nHere is the output:\n  left: ["a", "b"]\n right: ["a", "b", "c"]\nThanks!"}],"max_tokens":1024,"temperature":0.2}
"#;
    unit.iter()
        .copied()
        .cycle()
        .take(64 * 1024 * 1024)
        .collect()
}

/// 64 MiB of base64 (an uploaded file): the worst case, every byte decoded four ways.
fn base64_body() -> Vec<u8> {
    use base64::Engine;
    let raw: Vec<u8> = (0..48 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    base64::engine::general_purpose::STANDARD
        .encode(raw)
        .into_bytes()
}

struct Result_ {
    rps: f64,
    p50_us: u32,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    route: &Route,
    upstream: u16,
    clients: usize,
    secs: u64,
) -> Result_ {
    // Warm-up: connections, leaf certificates, caches.
    rt.block_on(client(
        route.clone(),
        upstream,
        Instant::now() + Duration::from_millis(300),
        &mut Vec::new(),
    ));
    let until = Instant::now() + Duration::from_secs(secs);
    let all = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let route = route.clone();
                tokio::spawn(async move {
                    let mut l = Vec::new();
                    client(route, upstream, until, &mut l).await;
                    l
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client"));
        }
        all
    });
    let mut sorted = all.clone();
    sorted.sort_unstable();
    Result_ {
        rps: all.len() as f64 / secs as f64,
        p50_us: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: u64 = flag("--seconds").and_then(|s| s.parse().ok()).unwrap_or(5);
    let mitmdump = flag("--mitmdump").or_else(|| std::env::var("BB_MITMDUMP").ok());
    // Another build of the sidecar (a "before" for an A/B run), else this one.
    // Only the request cells (what an A/B run of two builds compares, round after round).
    let requests_only = args.iter().any(|a| a == "--requests-only");
    let sidecar_bin = flag("--sidecar").unwrap_or_else(|| env!("CARGO_BIN_EXE_bb-sidecar").into());

    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = upstream_ca(dir.path());
    let upstream = start_upstream(&rt, &ca, b"http/1.1");
    let upstream_h2 = start_upstream(&rt, &ca, b"h2");
    let upstream_ca = ca.2.clone();
    let tunnel = start_copying_tunnel();

    // bb-sidecar with one route that injects a token.
    let (bottle_ca, bottle_key) = tls::ca("bench bottle CA");
    std::fs::write(dir.path().join("ca.pem"), bottle_ca.pem()).expect("write");
    std::fs::write(dir.path().join("ca.key"), bottle_key.serialize_pem()).expect("write");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(secrets.join("token"), TOKEN).expect("write");
    std::fs::write(
        dir.path().join("policy.yaml"),
        format!("log: 0\nroutes:\n  - host: localhost\n    ports: [{upstream}, {upstream_h2}]\n    auth: {{scheme: Bearer, tokenFile: token}}\n"),
    )
    .expect("write");
    let sc_port = free_port();
    let sidecar = Proc(
        Command::new(&sidecar_bin)
            .args([
                "egress",
                "--listen",
                &format!("127.0.0.1:{sc_port}"),
                "--ca-cert",
            ])
            .arg(dir.path().join("ca.pem"))
            .arg("--ca-key")
            .arg(dir.path().join("ca.key"))
            .arg("--policy")
            .arg(dir.path().join("policy.yaml"))
            .arg("--secrets-dir")
            .arg(&secrets)
            .arg("--upstream-ca")
            .arg(&upstream_ca)
            .arg("--allow-private-upstreams")
            .env("BB_SIDECAR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bb-sidecar"),
    );
    wait_listening(sc_port, "bb-sidecar");

    let sidecar_route = Route {
        proxy: Some(sc_port),
        trust: dir.path().join("ca.pem"),
        http2: false,
    };
    let direct = Route {
        proxy: None,
        trust: upstream_ca.clone(),
        http2: false,
    };
    let mut routes: Vec<(&str, Route, Option<u32>)> = vec![
        ("direct", direct.clone(), None),
        (
            "tcp tunnel",
            Route {
                proxy: Some(tunnel),
                ..direct.clone()
            },
            None,
        ),
        ("bb-sidecar", sidecar_route.clone(), Some(sidecar.0.id())),
    ];
    let mut _mitm = None;
    if let Some(bin) = &mitmdump {
        let addon = dir.path().join("allowlist.py");
        std::fs::write(
            &addon,
            format!(
                "from mitmproxy import http\nALLOWED = {{'localhost'}}\nclass Allow:\n    def http_connect(self, flow):\n        if flow.request.host not in ALLOWED:\n            flow.response = http.Response.make(403, b'blocked')\n    def request(self, flow):\n        if flow.request.host not in ALLOWED:\n            flow.response = http.Response.make(403, b'blocked')\n            return\n        flow.request.headers['authorization'] = 'Bearer {TOKEN}'\naddons = [Allow()]\n"
            ),
        )
        .expect("addon");
        let port = free_port();
        let confdir = dir.path().join("mitm");
        let child = Proc(
            Command::new(bin)
                .args([
                    "--listen-host",
                    "127.0.0.1",
                    "--listen-port",
                    &port.to_string(),
                    "-q",
                ])
                .arg("--set")
                .arg(format!("confdir={}", confdir.display()))
                .arg("--set")
                .arg(format!(
                    "ssl_verify_upstream_trusted_ca={}",
                    upstream_ca.display()
                ))
                .arg("-s")
                .arg(&addon)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mitmdump"),
        );
        wait_listening(port, "mitmdump");
        let pid = child.0.id();
        routes.push((
            "mitmdump",
            Route {
                proxy: Some(port),
                trust: confdir.join("mitmproxy-ca-cert.pem"),
                http2: false,
            },
            Some(pid),
        ));
        _mitm = Some(child);
    }

    let sidecar_pid = sidecar.0.id();
    let rss_started = rss_mib(sidecar_pid, "VmRSS:");
    let mut rows = Vec::new();
    for (name, route, pid) in &routes {
        let one = measure(&rt, route, upstream, 1, secs);
        let eight = measure(&rt, route, upstream, 8, secs);
        rows.push((*name, one, eight, pid.map(|p| rss_mib(p, "VmHWM:"))));
    }
    let rss_loaded = rss_mib(sidecar_pid, "VmRSS:");
    let direct_p50 = rows.first().map_or(0, |r| r.1.p50_us);
    println!(
        "\nSame machine (2 cores), local HTTPS upstream, HTTP/1.1 keep-alive, {secs} s per cell \
         (tcp tunnel: CONNECT and copy, no TLS termination: the floor for any proxy)"
    );
    println!(
        "{:<12} {:>14} {:>14} {:>14} {:>16} {:>10}",
        "path", "req/s (1)", "req/s (8)", "p50 (1) ms", "added p50 ms", "peak RSS"
    );
    for (name, one, eight, rss) in &rows {
        println!(
            "{:<12} {:>14.0} {:>14.0} {:>14.3} {:>16.3} {:>10}",
            name,
            one.rps,
            eight.rps,
            f64::from(one.p50_us) / 1000.0,
            f64::from(one.p50_us.saturating_sub(direct_p50)) / 1000.0,
            rss.map_or("-".to_string(), |r| format!("{r:.1} MiB"))
        );
    }
    if requests_only {
        return;
    }
    println!(
        "\nStreaming: a text/event-stream of {SSE_EVENTS} events {} ms apart, 100 runs, p50 \
         (HTTP/1.1 chunked; h2: the client and upstream speak HTTP/2)",
        SSE_GAP.as_millis()
    );
    println!(
        "{:<15} {:>16} {:>16} {:>18} {:>18}",
        "path", "first byte ms", "last byte ms", "added first ms", "added last ms"
    );
    let h2 = |r: &Route| Route {
        http2: true,
        ..r.clone()
    };
    let streams = [
        ("direct", direct.clone(), upstream),
        ("bb-sidecar", sidecar_route.clone(), upstream),
        ("direct h2", h2(&direct), upstream_h2),
        ("bb-sidecar h2", h2(&sidecar_route), upstream_h2),
    ];
    let mut direct_stream = (0, 0);
    let mut per_event = Vec::new();
    for (name, route, port) in &streams {
        let t = rt.block_on(stream_latency(route.clone(), *port, "/sse", 100));
        let (first, last) = (quantile(&t.first, 0.5), quantile(&t.last, 0.5));
        if route.proxy.is_none() {
            direct_stream = (first, last);
        }
        println!(
            "{:<15} {:>16.3} {:>16.3} {:>18.3} {:>18.3}",
            name,
            f64::from(first) / 1000.0,
            f64::from(last) / 1000.0,
            f64::from(first.saturating_sub(direct_stream.0)) / 1000.0,
            f64::from(last.saturating_sub(direct_stream.1)) / 1000.0,
        );
        let paced = rt.block_on(stream_latency(route.clone(), *port, "/sse-paced", 10));
        per_event.push((*name, t.events, paced.events));
    }
    println!(
        "\nPer event, from the upstream's send to the client's receipt ({SSE_EVENTS} events {} ms apart x 100 runs; {PACED_EVENTS} events {} ms apart x 10 runs)",
        SSE_GAP.as_millis(),
        PACED_GAP.as_millis()
    );
    println!(
        "{:<15} {:>14} {:>14} {:>15} {:>15}",
        "path", "2 ms p50 ms", "2 ms p99 ms", "50 ms p50 ms", "50 ms p99 ms"
    );
    for (name, fast, paced) in &per_event {
        println!(
            "{:<15} {:>14.3} {:>14.3} {:>15.3} {:>15.3}",
            name,
            f64::from(quantile(fast, 0.5)) / 1000.0,
            f64::from(quantile(fast, 0.99)) / 1000.0,
            f64::from(quantile(paced, 0.5)) / 1000.0,
            f64::from(quantile(paced, 0.99)) / 1000.0,
        );
    }
    println!(
        "\nbb-sidecar RSS: {rss_started:.1} MiB after start-up, {rss_loaded:.1} MiB after the \
         request cells, {:.1} MiB after the streams (peak {:.1} MiB)",
        rss_mib(sidecar_pid, "VmRSS:"),
        rss_mib(sidecar_pid, "VmHWM:")
    );
    println!("\nOutbound DLP, 64 MiB streamed in 16 KiB chunks, all detectors and decoded views");
    println!(
        "{:<28} {:>10.0} MB/s",
        "plain (JSON chat requests)",
        dlp_throughput(&plain_body())
    );
    println!(
        "{:<28} {:>10.0} MB/s",
        "base64 upload",
        dlp_throughput(&base64_body())
    );
    if let (Some(sc), Some(m)) = (
        rows.iter().find(|r| r.0 == "bb-sidecar"),
        rows.iter().find(|r| r.0 == "mitmdump"),
    ) {
        println!(
            "\nbb-sidecar / mitmdump requests/s: {:.1}x with 1 client, {:.1}x with 8 (target >= 10x)",
            sc.1.rps / m.1.rps.max(1.0),
            sc.2.rps / m.2.rps.max(1.0)
        );
    }
    if let (Some(sc), Some(d)) = (
        rows.iter().find(|r| r.0 == "bb-sidecar"),
        rows.iter().find(|r| r.0 == "direct"),
    ) {
        // A bumping proxy does twice the TLS work of a direct client: about 50% is the ceiling.
        println!(
            "bb-sidecar / direct requests/s with 8 clients: {:.0}% (target >= 45%)",
            100.0 * sc.2.rps / d.2.rps.max(1.0)
        );
    }
}
