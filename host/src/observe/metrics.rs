//! The host's Prometheus metrics, served as text at `/metrics` on the REST listener (behind its
//! Basic Auth; REST refuses a non-loopback address without it).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::sandboxes::Manager;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Every metric the host keeps; calls update them as they end, a scrape reads the rest.
pub struct Metrics {
    registry: Registry,
    latency: Family<MethodLabels, Histogram>,
    calls: Family<CodeLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    bytes_out: Family<MethodLabels, Counter>,
    bytes_in: Family<MethodLabels, Counter>,
    creates: Counter,
    destroys: Counter,
    run_kills: Family<ReasonLabels, Counter>,
    sandboxes: Family<StateLabels, Gauge>,
    pool_ready: Family<PoolLabels, Gauge>,
    pool_starting: Family<PoolLabels, Gauge>,
    pool_claims: Family<PoolLabels, Gauge>,
    pool_misses: Family<PoolLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agent_runtime");
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            // 1 ms to ~65 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        });
        registry.register(
            "rpc_duration_seconds",
            "gRPC call latency to the answer's last byte, per method",
            latency.clone(),
        );
        let calls = Family::<CodeLabels, Counter>::default();
        registry.register(
            "rpc_calls",
            "gRPC calls per method and status code",
            calls.clone(),
        );
        let errors = Family::<CodeLabels, Counter>::default();
        registry.register(
            "rpc_errors",
            "gRPC calls that did not end OK, per method and status code",
            errors.clone(),
        );
        let bytes_out = Family::<MethodLabels, Counter>::default();
        registry.register(
            "rpc_response_bytes",
            "Bytes streamed to callers, per method",
            bytes_out.clone(),
        );
        let bytes_in = Family::<MethodLabels, Counter>::default();
        registry.register(
            "rpc_request_bytes",
            "Bytes received from callers, per method",
            bytes_in.clone(),
        );
        let creates = Counter::default();
        registry.register(
            "sandbox_creates",
            "Sandboxes created over gRPC",
            creates.clone(),
        );
        let destroys = Counter::default();
        registry.register(
            "sandbox_destroys",
            "Sandboxes destroyed over gRPC",
            destroys.clone(),
        );
        let run_kills = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "run_kills",
            "Runs killed, by reason (oom, timeout, cancelled)",
            run_kills.clone(),
        );
        let sandboxes = Family::<StateLabels, Gauge>::default();
        registry.register("sandboxes", "Sandboxes by state", sandboxes.clone());
        let pool_ready = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_ready", "Warm pool members ready", pool_ready.clone());
        let pool_starting = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_starting",
            "Warm pool members starting",
            pool_starting.clone(),
        );
        let pool_claims = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_claims",
            "Creates served from the pool since the host started",
            pool_claims.clone(),
        );
        let pool_misses = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_misses",
            "Creates that found the pool empty since the host started",
            pool_misses.clone(),
        );
        Self {
            registry,
            latency,
            calls,
            errors,
            bytes_out,
            bytes_in,
            creates,
            destroys,
            run_kills,
            sandboxes,
            pool_ready,
            pool_starting,
            pool_claims,
            pool_misses,
        }
    }

    /// Counts one ended call.
    #[allow(clippy::too_many_arguments)]
    pub fn call_ended(
        &self,
        method: &str,
        code: &str,
        seconds: f64,
        request_bytes: u64,
        response_bytes: u64,
        kill_reason: Option<&str>,
    ) {
        let m = MethodLabels {
            method: method.to_owned(),
        };
        self.latency.get_or_create(&m).observe(seconds);
        self.bytes_out.get_or_create(&m).inc_by(response_bytes);
        self.bytes_in.get_or_create(&m).inc_by(request_bytes);
        let c = CodeLabels {
            method: method.to_owned(),
            code: code.to_owned(),
        };
        self.calls.get_or_create(&c).inc();
        if code != "OK" {
            self.errors.get_or_create(&c).inc();
        } else if method == "Sandboxes/Create" {
            self.creates.inc();
        } else if method == "Sandboxes/Destroy" {
            self.destroys.inc();
        }
        if let Some(reason) = kill_reason {
            self.run_kills
                .get_or_create(&ReasonLabels {
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// The metrics as Prometheus text, with the sandbox and pool gauges read from `manager` now.
    pub fn render(&self, manager: &Manager) -> String {
        self.sandboxes.clear();
        for state in ["creating", "running", "dead"] {
            self.sandboxes
                .get_or_create(&StateLabels {
                    state: state.to_owned(),
                })
                .set(0);
        }
        for record in manager.list() {
            self.sandboxes
                .get_or_create(&StateLabels {
                    state: record.status.as_str().to_owned(),
                })
                .inc();
        }
        for gauge in [
            &self.pool_ready,
            &self.pool_starting,
            &self.pool_claims,
            &self.pool_misses,
        ] {
            gauge.clear();
        }
        for pool in manager.pool_status() {
            let l = PoolLabels {
                pool: pool.shape.name.clone(),
            };
            self.pool_ready.get_or_create(&l).set(pool.ready as i64);
            self.pool_starting
                .get_or_create(&l)
                .set(pool.starting as i64);
            self.pool_claims.get_or_create(&l).set(pool.claims as i64);
            self.pool_misses.get_or_create(&l).set(pool.misses as i64);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
