//! TLS bump: inside an admitted CONNECT tunnel, the proxy answers TLS as the target host with a
//! certificate minted by the bottle CA, checks the SNI, and serves HTTP/1.1 or HTTP/2 to `relay`.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsAcceptor;

use bb_policy::rule::Rule;

use crate::decision::Target;
use crate::policy::normalise_host;
use crate::proxy::Proxy;

impl Proxy {
    /// Serves one upgraded CONNECT to `host:port` until the agent closes it.
    pub(crate) async fn tunnel(
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
                self.record_closed_tunnel(&host, Rule::NotTls);
                return;
            }
        };
        if let Some(sni) = tls.get_ref().1.server_name()
            && normalise_host(sni) != normalise_host(&host)
        {
            tracing::warn!(%host, sni, "closed a tunnel whose SNI differs from its CONNECT target");
            self.record_closed_tunnel(&host, Rule::SniMismatch);
            return;
        }
        let target = Target {
            host,
            port,
            tls: true,
        };
        let svc = hyper::service::service_fn(move |req| {
            let proxy = self.clone();
            let target = target.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.forward(req, target).await) }
        });
        // The agent picks HTTP/2 or HTTP/1.1 by ALPN inside the tunnel; both get the same rules.
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().max_buf_size(64 * 1024);
        builder.http2().max_header_list_size(64 * 1024);
        if let Err(e) = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), svc)
            .await
        {
            tracing::debug!(error = %e, "tunnel ended");
        }
    }
}
