//! Real OTLP receivers on loopback for the telemetry tests: the collector's own tonic
//! `TraceService` (from `opentelemetry-proto`) and an http/protobuf one, and a wait for a span.
#![allow(dead_code)] // each test binary uses its part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

/// One received span: who sent it and where it sits.
#[derive(Clone, Debug)]
pub struct Got {
    pub service: String,
    pub name: String,
    pub trace: String,
    pub id: String,
    pub parent: String,
    pub attrs: HashMap<String, String>,
}

#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Got>>>);

impl Received {
    pub fn add(&self, req: ExportTraceServiceRequest) {
        let mut all = self.0.lock().expect("not poisoned");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(any_text)
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    all.push(Got {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace: hex::encode(&span.trace_id),
                        id: hex::encode(&span.span_id),
                        parent: hex::encode(&span.parent_span_id),
                        attrs: span
                            .attributes
                            .iter()
                            .map(|kv| {
                                (
                                    kv.key.clone(),
                                    kv.value.as_ref().map(any_text).unwrap_or_default(),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
    }

    pub fn spans(&self) -> Vec<Got> {
        self.0.lock().expect("not poisoned").clone()
    }
}

pub fn any_text(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match &v.value {
        Some(V::StringValue(s)) => s.clone(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The OTLP/gRPC receiver (tonic, the collector's own service definition).
pub async fn grpc_receiver(received: Received) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

/// The OTLP/HTTP receiver: POST /v1/traces with a protobuf body.
pub async fn http_receiver(received: Received) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        received.add(req);
                        (
                            [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                            .into_response_parts_ok()
                    }
                    Err(_) => http::StatusCode::BAD_REQUEST.into_response_parts_ok(),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

trait OkResponse {
    fn into_response_parts_ok(self) -> axum::response::Response;
}
impl<T: axum::response::IntoResponse> OkResponse for T {
    fn into_response_parts_ok(self) -> axum::response::Response {
        self.into_response()
    }
}

/// Waits (polling) until `check` finds what it wants in the spans received so far.
pub async fn until<T>(received: &Received, what: &str, check: impl Fn(&[Got]) -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(found) = check(&received.spans()) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> = received
        .spans()
        .iter()
        .map(|g| {
            format!(
                "{}:{} trace={} id={} parent={}",
                g.service, g.name, g.trace, g.id, g.parent
            )
        })
        .collect();
    panic!("never received {what}; received:\n{}", names.join("\n"));
}

/// Waits for the span `name` that `service` exported in trace `trace`.
pub async fn span_in(received: &Received, service: &str, name: &str, trace: &str) -> Got {
    let what = format!("{service}'s {name} span in trace {trace}");
    until(received, &what, |spans| {
        spans
            .iter()
            .find(|g| g.service == service && g.name == name && g.trace == trace)
            .cloned()
    })
    .await
}
