//! TLS bump: inside an admitted CONNECT tunnel, the proxy answers TLS as the target host with a
//! certificate minted by the bottle CA, checks the SNI, and serves HTTP/1.1 or HTTP/2 to the
//! relay.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsAcceptor;

use bb_policy::rule::Rule;

use crate::decision::Target;
use crate::mint::Minter;
use crate::policy::normalise_host;
use crate::relay::Relay;

/// An admitted CONNECT: answered as its target with a minted certificate, its requests served
/// to the relay.
#[derive(Debug)]
pub struct Tunnel {
    minter: Minter,
    relay: Arc<Relay>,
}

impl Tunnel {
    pub fn new(minter: Minter, relay: Arc<Relay>) -> Tunnel {
        Tunnel { minter, relay }
    }

    /// A tunnel closed before any request could be read from it is a refusal of its own.
    fn closed(&self, host: &str, rule: Rule) {
        self.relay
            .ledger()
            .record_tunnel(&self.relay.policy(), host, rule);
    }

    /// Serves one upgraded CONNECT to `host:port` until the agent closes it.
    pub async fn serve(
        self: Arc<Self>,
        upgraded: hyper::upgrade::Upgraded,
        host: String,
        port: u16,
    ) {
        let cfg = match self.minter.server_config(&normalise_host(&host)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mint a certificate");
                return;
            }
        };
        // Anything but a TLS handshake (raw bytes, another protocol) fails here and the tunnel
        // closes.
        let tls = match TlsAcceptor::from(cfg).accept(TokioIo::new(upgraded)).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(%host, error = %e, "closed a tunnel that did not speak TLS");
                self.closed(&host, Rule::NotTls);
                return;
            }
        };
        if let Some(sni) = tls.get_ref().1.server_name()
            && normalise_host(sni) != normalise_host(&host)
        {
            tracing::warn!(%host, sni, "closed a tunnel whose SNI differs from its CONNECT target");
            self.closed(&host, Rule::SniMismatch);
            return;
        }
        let target = Target {
            host,
            port,
            tls: true,
        };
        // An HTTP/2 agent's streams are served concurrently, each on a task of its own: they
        // share the pool. An HTTP/1.1 agent's requests come one at a time: they get a connection
        // of their own, driven here (`tunnel_upstream`).
        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let own = (!http2).then(|| self.relay.tunnel_upstream());
        let relay = self.relay.clone();
        let svc_own = own.clone();
        let svc = hyper::service::service_fn(move |req| {
            let relay = relay.clone();
            let target = target.clone();
            let own = svc_own.clone();
            async move {
                Ok::<_, std::convert::Infallible>(relay.forward(req, target, own.as_ref()).await)
            }
        });
        // The agent picks HTTP/2 or HTTP/1.1 by ALPN inside the tunnel; both get the same rules.
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().max_buf_size(64 * 1024);
        builder.http2().max_header_list_size(64 * 1024);
        let served = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
        let driven = async {
            match &own {
                Some(own) => own.drive().await,
                None => std::future::pending().await,
            }
        };
        // The upstream connection first: what it reads is then ready for the agent's side in
        // the same poll.
        tokio::select! {
            biased;
            () = driven => {}
            r = served => if let Err(e) = r {
                tracing::debug!(error = %e, "tunnel ended");
            },
        }
        if let Some(own) = &own {
            own.park();
        }
    }
}
