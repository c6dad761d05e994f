//! `/metrics`, in Prometheus text format. Figures are read from the
//! server when scraped (counters live with each client, see the hub's
//! query API), so serving metrics costs nothing between scrapes, and
//! nothing on the path of a message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::server::control::Control;

type Labels = Vec<(&'static str, String)>;

/// What the HTTP listener counts itself: requests by route and status.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    requests: Family<Labels, Counter>,
}

impl HttpMetrics {
    pub(crate) fn count(&self, route: &'static str, status: StatusCode) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("status", status.as_u16().to_string()),
            ])
            .inc();
    }
}

/// The route a path belongs to, as a label: a fixed set, so that no
/// request can make up new time series.
pub(crate) fn route_label(path: &str) -> &'static str {
    const ROUTES: [&str; 10] = [
        "/api/v1/stats",
        "/api/v1/clients",
        "/api/v1/rooms",
        "/api/v1/send",
        "/api/v1/listeners",
        "/api/v1/live",
        "/api/v1/openapi.json",
        "/metrics",
        "/healthz",
        "/ws",
    ];
    if path == "/" || path == "/login" || path == "/logout" || path.starts_with("/assets/") {
        return "console";
    }
    ROUTES
        .into_iter()
        .find(|route| {
            path == *route
                || path
                    .strip_prefix(route)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .unwrap_or("other")
}

/// Reads the server's figures at each scrape.
#[derive(Debug)]
struct ServerCollector(Control);

fn labelled<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: M,
) -> Result<(), std::fmt::Error> {
    value.encode(encoder.encode_descriptor(name, help, None, kind)?)
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let control = &self.0;
        let stats = control.stats();
        let by_kind = control.totals_by_kind();
        let (connected, queued) = control.load();
        let mode = |kind: &str| vec![("mode", kind.to_owned())];
        let e = &mut encoder;
        labelled(
            e,
            "switchboard_clients",
            "Clients connected now, by mode (text, json, raw, ws, ws-raw)",
            MetricType::Gauge,
            connected
                .iter()
                .map(|(kind, n)| (mode(kind.as_str()), ConstGauge::new(*n as i64))),
        )?;
        type Pick = fn(&crate::hub::Totals) -> u64;
        let counters: [(&str, &str, Pick); 5] = [
            (
                "switchboard_connections",
                "Clients connected since the start, by mode",
                |t| t.clients,
            ),
            (
                "switchboard_messages_received",
                "Messages received from clients, by mode",
                |t| t.messages_in,
            ),
            (
                "switchboard_messages_delivered",
                "Messages and notices delivered to clients, by mode",
                |t| t.messages_out,
            ),
            (
                "switchboard_received_bytes",
                "Bytes received from clients, by mode",
                |t| t.bytes_in,
            ),
            (
                "switchboard_sent_bytes",
                "Bytes written to clients, by mode",
                |t| t.bytes_out,
            ),
        ];
        for (name, help, pick) in counters {
            labelled(
                e,
                name,
                help,
                MetricType::Counter,
                by_kind
                    .iter()
                    .filter(|(kind, totals)| totals.clients > 0 || connected.contains_key(kind))
                    .map(|(kind, totals)| (mode(kind.as_str()), ConstCounter::new(pick(totals)))),
            )?;
        }
        labelled(
            e,
            "switchboard_disconnects",
            "Clients disconnected since the start, by reason",
            MetricType::Counter,
            control
                .disconnects()
                .into_iter()
                .map(|(reason, n)| (vec![("reason", reason.to_owned())], ConstCounter::new(n))),
        )?;
        single(
            e,
            "switchboard_flow_control_pauses",
            "Times a sender waited for a receiver over its queue's soft limit",
            MetricType::Counter,
            ConstCounter::new(control.flow_control_pauses()),
        )?;
        single(
            e,
            "switchboard_queue_cutoffs",
            "Clients cut off for not keeping up (slow consumer, stalled, memory budget)",
            MetricType::Counter,
            ConstCounter::new(stats.queue_cutoffs),
        )?;
        single(
            e,
            "switchboard_queued_bytes",
            "Bytes queued for clients, not yet written",
            MetricType::Gauge,
            ConstGauge::new(queued as i64),
        )?;
        single(
            e,
            "switchboard_memory_held_bytes",
            "Bytes clients hold in queues and unfinished input, at the last sweep",
            MetricType::Gauge,
            ConstGauge::new(stats.memory.held as i64),
        )?;
        single(
            e,
            "switchboard_memory_budget_bytes",
            "The memory budget (max memory)",
            MetricType::Gauge,
            ConstGauge::new(stats.memory.budget as i64),
        )?;
        single(
            e,
            "switchboard_history_bytes",
            "Bytes the rooms' histories hold (--history)",
            MetricType::Gauge,
            ConstGauge::new(stats.memory.history as i64),
        )?;
        single(
            e,
            "switchboard_history_evicted",
            "Kept messages evicted to keep within the memory budget",
            MetricType::Counter,
            ConstCounter::new(stats.memory.history_evicted),
        )?;
        single(
            e,
            "switchboard_resident_memory_bytes",
            "The process's resident memory",
            MetricType::Gauge,
            ConstGauge::new(stats.memory.rss as i64),
        )?;
        single(
            e,
            "switchboard_rooms",
            "Rooms now",
            MetricType::Gauge,
            ConstGauge::new(stats.rooms as i64),
        )?;
        single(
            e,
            "switchboard_accept_errors",
            "Failed accept calls",
            MetricType::Counter,
            ConstCounter::new(stats.accept_errors),
        )?;
        single(
            e,
            "switchboard_tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            MetricType::Counter,
            ConstCounter::new(stats.tls_handshake_failures),
        )?;
        single(
            e,
            "switchboard_refused_connections",
            "Connections refused at the door (connection and memory limits)",
            MetricType::Counter,
            ConstCounter::new(stats.refused),
        )?;
        if let Some(cluster) = &stats.cluster {
            cluster_metrics(e, cluster)?;
        }
        if let Some(store) = &stats.history_store {
            single(
                e,
                "switchboard_history_saved",
                "Kept messages written to --history-dir",
                MetricType::Counter,
                ConstCounter::new(store.saved),
            )?;
            single(
                e,
                "switchboard_history_save_errors",
                "Commits to --history-dir that failed (history stays in memory and is saved when the store works again)",
                MetricType::Counter,
                ConstCounter::new(store.errors),
            )?;
            single(
                e,
                "switchboard_history_store_bytes",
                "Size of the --history-dir store's file",
                MetricType::Gauge,
                ConstGauge::new(i64::try_from(store.bytes).unwrap_or(i64::MAX)),
            )?;
        }
        single(
            e,
            "switchboard_uptime_seconds",
            "Seconds since the server started",
            MetricType::Gauge,
            ConstGauge::new(stats.uptime_seconds as i64),
        )?;
        Ok(())
    }
}

/// The cluster's figures, as this node sees them.
fn cluster_metrics(
    e: &mut DescriptorEncoder,
    cluster: &crate::cluster::ClusterStatus,
) -> std::fmt::Result {
    single(
        e,
        "switchboard_cluster_degraded",
        "1 while this node cannot reach the cluster's Redis",
        MetricType::Gauge,
        ConstGauge::new(cluster.degraded as i64),
    )?;
    labelled(
        e,
        "switchboard_cluster_node_clients",
        "Clients of each live node of the cluster",
        MetricType::Gauge,
        cluster.nodes.iter().map(|node| {
            (
                vec![("node", node.name.clone())],
                ConstGauge::new(node.clients as i64),
            )
        }),
    )?;
    for (name, help, value) in [
        (
            "switchboard_cluster_messages_out",
            "Frames published to the other nodes",
            cluster.messages_out,
        ),
        (
            "switchboard_cluster_messages_in",
            "Frames received from the other nodes",
            cluster.messages_in,
        ),
        (
            "switchboard_cluster_send_failures",
            "Cross-node sends dropped: Redis out of reach or too slow",
            cluster.send_failures,
        ),
        (
            "switchboard_cluster_gaps",
            "Frames from other nodes that never arrived, as sequence gaps showed",
            cluster.gaps,
        ),
        (
            "switchboard_cluster_fenced",
            "Times this node found its lease gone and joined again",
            cluster.fenced,
        ),
    ] {
        single(e, name, help, MetricType::Counter, ConstCounter::new(value))?;
    }
    single(
        e,
        "switchboard_cluster_redis_rtt_seconds",
        "The last lease renewal's round trip to Redis",
        MetricType::Gauge,
        ConstGauge::new(cluster.redis_rtt_us as f64 / 1e6),
    )
}

/// Serves the metrics. Collected on the admin thread: reading every
/// client's counters takes milliseconds with thousands of clients (7 ms at
/// 9,000), which a runtime thread the relay shares should not spend.
pub(crate) async fn scrape(axum::extract::State(app): AppState) -> Response {
    let (control, requests) = (app.control.clone(), app.metrics.requests.clone());
    let encoded = app
        .background
        .run(move || {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(ServerCollector(control)));
            registry.register(
                "switchboard_http_requests",
                "HTTP requests, by route and status",
                requests,
            );
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)
                .map(|()| text)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|| Err("the admin thread failed".to_owned()));
    let text = match encoded {
        Ok(text) => text,
        Err(e) => return super::error(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e),
    };
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
