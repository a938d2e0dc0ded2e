//! The HTTP listeners: the API (with the status page) and the metrics, both served by the one
//! HTTP server of [`crate::http`] (its accept loop, connection cap and time limits).

// Clock, tokio and sockets are allowed here: starts the listeners' tasks (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use super::{admin_token::load_admin_token, Controller, Inbox};
use std::time::Duration;

/// Starts the metrics listener (`metrics.listen`) and the API's (`api.listen`), those not
/// turned off (empty). The API's notices go to the link loop's inbox.
pub async fn start(ctl: &Controller) {
    if !ctl.cfg.metrics.listen.is_empty() {
        serve_metrics(ctl.cfg.metrics.listen.clone(), ctl.metrics.clone()).await;
    }
    if !ctl.cfg.api.listen.is_empty() {
        let admin_token = load_admin_token(&ctl.cfg.api.admin_token_file);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let inbox = ctl.inbox_tx.clone();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                if inbox.send(Inbox::Api(n)).is_err() {
                    break;
                }
            }
        });
        let mut api = crate::api::Api::new(ctl.service.clone(), admin_token, &ctl.cfg.api, tx, ctl.metrics.clone());
        api.board = ctl.board.clone();
        crate::api::serve(ctl.cfg.api.listen.clone(), std::sync::Arc::new(api)).await;
    }
}

/// Connections the metrics listener serves at once (a scraper needs one).
const METRICS_MAX_CONNECTIONS: usize = 16;

/// Serves `GET /metrics` (Prometheus text) on `listen` through [`crate::http::serve`]; a bind
/// failure is logged and handoffd runs on without metrics.
async fn serve_metrics(listen: String, metrics: std::sync::Arc<crate::metrics::Metrics>) {
    use crate::http::{connection_cap, open_files_limit, Limits, Response};
    let limits = Limits {
        max_connections: connection_cap(METRICS_MAX_CONNECTIONS, open_files_limit(), 2),
        read_timeout: Duration::from_secs(2),
        max_body: 0,
    };
    let counters = metrics.metrics_http.clone();
    crate::http::serve("metrics", &listen, limits, counters, move |req, _| {
        let metrics = metrics.clone();
        async move {
            if (req.method.as_str(), req.path.as_str()) == ("GET", "/metrics") {
                Response { status: 200, content_type: "text/plain; version=0.0.4", body: metrics.render() }
            } else {
                Response { status: 404, content_type: "text/plain", body: String::new() }
            }
        }
    })
    .await;
}
