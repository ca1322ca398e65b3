//! The REST API in-process (the middle tier): an `InProcessHost` over the local backend (real
//! sandboxd processes on temporary sockets, real ipykernel contexts), driven with plain HTTP.
//! No Docker; needs `cargo build -p sandboxd` and Python's ipykernel (`pip install ipykernel`).
//! Every answer is also checked against the generated OpenAPI document: its status must be
//! documented for the route, and its JSON fields must be the schema's. Assertions are about
//! behaviour and order, never elapsed time.

use std::sync::Arc;
use std::time::Duration;

use agent_runtime::backend::local::LocalBackend;
use agent_runtime::ids::SandboxId;
use agent_runtime::rest::auth::BasicAuth;
use agent_runtime::rest::openapi;
use agent_runtime::sandboxes::{CreateSpec, SandboxStatus};
use agent_runtime::serve::{InProcessHost, InProcessOptions};
use agent_runtime_client::{sandbox_client, with_sandbox};
use agent_runtime_proto::v1::CreateContextRequest;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A hang guard for each request, not a measure.
const PATIENCE: Duration = Duration::from_secs(60);

/// An in-process host over a fresh local backend, with REST on.
async fn start(opts: InProcessOptions) -> (InProcessHost, Arc<LocalBackend>) {
    let python = std::process::Command::new("python3")
        .args(["-c", "import ipykernel"])
        .status();
    assert!(
        python.is_ok_and(|s| s.success()),
        "REST route tests run real Jupyter kernels: install ipykernel (`pip install ipykernel`)"
    );
    InProcessHost::local(opts)
        .await
        .unwrap_or_else(|e| panic!("in-process host: {e:#}"))
}

/// A REST client for one host that checks every answer against the OpenAPI document.
struct Rest {
    base: String,
    http: reqwest::Client,
    auth: Option<(&'static str, &'static str)>,
    doc: Value,
}

impl Rest {
    fn new(host: &InProcessHost) -> Self {
        Self {
            base: host.rest_url().expect("REST is on"),
            http: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .expect("client"),
            auth: None,
            doc: serde_json::from_str(&openapi::render(&openapi::document())).expect("JSON"),
        }
    }

    fn with_auth(mut self, user: &'static str, password: &'static str) -> Self {
        self.auth = Some((user, password));
        self
    }

    /// `method path` with a raw body; the status and the JSON answer (Null when not JSON).
    async fn raw(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some((user, password)) = self.auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some((template, op)) = self.operation(&method, path) {
            self.conforms(&template, &method, op, status, &value);
        }
        (status, value)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(method, path, body.map(|b| b.to_string())).await
    }

    async fn create(&self, body: Value) -> Value {
        let (status, v) = self
            .call(Method::POST, "/api/v1/contexts", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    async fn execute(&self, ctx: &str, code: &str) -> (StatusCode, Value) {
        self.execute_body(ctx, json!({ "code": code })).await
    }

    async fn execute_body(&self, ctx: &str, body: Value) -> (StatusCode, Value) {
        let path = format!("/api/v1/contexts/{ctx}/execute");
        self.call(Method::POST, &path, Some(body)).await
    }

    /// The documented operation `path` matches, with its template.
    fn operation(&self, method: &Method, path: &str) -> Option<(String, &Value)> {
        let paths = self.doc["paths"].as_object()?;
        let given: Vec<&str> = path.split('/').collect();
        paths.iter().find_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            let fits = parts.len() == given.len()
                && parts
                    .iter()
                    .zip(&given)
                    .all(|(t, g)| t == g || (t.starts_with('{') && t.ends_with('}')));
            let op = item.get(method.as_str().to_lowercase())?;
            fits.then(|| (template.clone(), op))
        })
    }

    /// The status is documented for the operation and the body has the schema's fields.
    fn conforms(&self, template: &str, method: &Method, op: &Value, status: StatusCode, v: &Value) {
        let documented = &op["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {template} answered {status}, which the OpenAPI document does not list: {v}"
        );
        if let Some(schema) = documented
            .pointer("/content/application~1json/schema")
            .filter(|_| !v.is_null())
        {
            self.fits(schema, v, &format!("{method} {template} {status}"));
        }
    }

    /// `v` has every required field of `schema`, and no field it does not declare.
    fn fits(&self, schema: &Value, v: &Value, what: &str) {
        if let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            return self.fits(&self.doc["components"]["schemas"][name], v, what);
        }
        if schema["type"] == "array" {
            for item in v
                .as_array()
                .unwrap_or_else(|| panic!("{what}: not an array: {v}"))
            {
                self.fits(&schema["items"], item, what);
            }
            return;
        }
        let Some(props) = schema["properties"].as_object() else {
            return;
        };
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
        for key in obj.keys() {
            assert!(
                props.contains_key(key),
                "{what}: undocumented field {key:?} in {v}"
            );
        }
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            assert!(obj.contains_key(key), "{what}: no {key:?} in {v}");
        }
        for (key, value) in obj {
            if props[key].get("$ref").is_some() || props[key]["type"] == "array" {
                self.fits(&props[key], value, what);
            }
            if let Some(allowed) = props[key]["enum"].as_array() {
                assert!(
                    allowed.contains(value),
                    "{what}: {key} = {value} is not one of {allowed:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn every_route_answers_in_its_documented_shape() {
    let (host, _backend) = start(InProcessOptions::default()).await;
    let rest = Rest::new(&host);

    let health = reqwest::get(format!("{}/health", rest.base))
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.expect("text"), "OK");
    let served = reqwest::get(format!("{}/api/v1/openapi.json", rest.base))
        .await
        .expect("openapi")
        .text()
        .await
        .expect("text");
    assert_eq!(served, openapi::render(&openapi::document()));

    let created = rest
        .create(
            json!({"type": "jupyter", "language": "python", "session_name": "spec",
                       "working_dir": "/tmp"}),
        )
        .await;
    let ctx = created["context_id"].as_str().expect("id").to_owned();
    assert!(ctx.starts_with("ctx-"), "{created}");
    assert_eq!(
        (
            &created["type"],
            &created["status"],
            &created["session_name"],
            &created["working_dir"]
        ),
        (
            &json!("jupyter"),
            &json!("active"),
            &json!("spec"),
            &json!("/tmp")
        )
    );
    let sandbox = SandboxId::parse(created["sandbox_id"].as_str().expect("sandbox")).expect("id");
    assert!(host.manager.get(&sandbox).is_ok(), "its own sandbox");

    // Variables persist between executions.
    let (status, v) = rest.execute(&ctx, "x = 100").await;
    assert_eq!(
        (status, &v["success"]),
        (StatusCode::OK, &json!(true)),
        "{v}"
    );
    let (_, v) = rest.execute(&ctx, "print(x)").await;
    assert_eq!(v["output"], json!({"stdout": "100\n", "stderr": ""}), "{v}");
    assert!(
        v["execution_time"].as_f64().is_some_and(|t| t >= 0.0),
        "{v}"
    );
    // The value of the last expression is a rich result.
    let (_, v) = rest.execute(&ctx, "x + 1").await;
    assert_eq!(v["results"][0]["data"]["text/plain"], "101", "{v}");
    assert_eq!(v["results"][0]["is_main_result"], true, "{v}");
    // An exception: not a success, named, and its traceback after stderr.
    let (status, v) = rest.execute(&ctx, "1/0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&v["success"], &v["error"]["name"]),
        (&json!(false), &json!("ZeroDivisionError"))
    );
    let stderr = v["output"]["stderr"].as_str().expect("stderr");
    assert!(stderr.contains("ZeroDivisionError"), "{v}");

    // Streamed: the lines in order, the last one `done`, its success the same definition.
    let resp = rest
        .http
        .post(format!("{}/api/v1/contexts/{ctx}/execute", rest.base))
        .header("accept", "application/x-ndjson")
        .json(&json!({"code": "print('a', flush=True)\nraise ValueError('b')"}))
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("lines");
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["type"].to_string())
        .collect();
    assert_eq!(kinds, [r#""stdout""#, r#""error""#, r#""done""#], "{text}");
    let done: Value = serde_json::from_str(text.lines().last().expect("done")).expect("JSON");
    assert_eq!(done["success"], false, "an exception is no success: {done}");

    let (status, listed) = rest.call(Method::GET, "/api/v1/contexts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["context_id"], ctx.as_str());
    let (status, got) = rest
        .call(Method::GET, &format!("/api/v1/contexts/{ctx}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["context_id"], ctx.as_str());

    let (status, v) = rest
        .call(Method::DELETE, &format!("/api/v1/contexts/{ctx}"), None)
        .await;
    assert_eq!(
        (status, v),
        (StatusCode::OK, json!({"success": true, "context_id": ctx}))
    );
    assert!(
        host.manager.get(&sandbox).is_err(),
        "its sandbox went with it"
    );
    let (status, v) = rest.execute(&ctx, "print(x)").await;
    assert_eq!(
        (status, v),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "Context not found", "code": "CONTEXT_NOT_FOUND"})
        )
    );
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn every_error_code() {
    let (host, _backend) = start(InProcessOptions::default()).await;
    let rest = Rest::new(&host);
    let ctx = rest.create(json!({})).await["context_id"]
        .as_str()
        .expect("id")
        .to_owned();

    let execute = format!("/api/v1/contexts/{ctx}/execute");
    let create = "/api/v1/contexts";
    let bad: [(&str, &str, &str); 7] = [
        (create, "{not json", "JSON"),
        (create, r#"{"colour": "blue"}"#, "unknown field `colour`"),
        (create, r#"{"language": "cobol"}"#, "use \"python\""),
        (create, r#"{"type": "notebook"}"#, "use \"jupyter\""),
        (create, r#"{"sandbox_id": "nope"}"#, "not a sandbox id"),
        (&execute, r#"{"code": 1}"#, "invalid type"),
        (
            &execute,
            r#"{"code": "1", "timeout": 7200}"#,
            "3600 seconds",
        ),
    ];
    for (path, body, hint) in bad {
        let (status, v) = rest.raw(Method::POST, path, Some(body.into())).await;
        assert_eq!(
            (status, &v["code"]),
            (StatusCode::BAD_REQUEST, &json!("BAD_REQUEST")),
            "{body}"
        );
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(hint)),
            "{body}: {v}"
        );
    }

    let unknown = "ctx-000000000000";
    for (method, path) in [
        (Method::GET, format!("/api/v1/contexts/{unknown}")),
        (Method::DELETE, format!("/api/v1/contexts/{unknown}")),
        (Method::POST, format!("/api/v1/contexts/{unknown}/execute")),
    ] {
        let body = (method == Method::POST).then(|| json!({"code": "1"}));
        let (status, v) = rest.call(method.clone(), &path, body).await;
        assert_eq!(
            (status, &v["code"]),
            (StatusCode::NOT_FOUND, &json!("CONTEXT_NOT_FOUND")),
            "{path}"
        );
    }
    let (status, v) = rest.call(Method::GET, "/api/v1/nothing", None).await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::NOT_FOUND, &json!("NOT_FOUND"))
    );

    // TIMEOUT: the cell is interrupted and the context keeps its state.
    rest.execute(&ctx, "kept = 7").await;
    let (status, v) = rest
        .execute_body(&ctx, json!({"code": "while True: pass", "timeout": 1}))
        .await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::REQUEST_TIMEOUT, &json!("TIMEOUT")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("keeps its state")),
        "{v}"
    );
    let (_, v) = rest.execute(&ctx, "print(kept)").await;
    assert_eq!(v["output"]["stdout"], "7\n", "{v}");
    // A timeout of 0 is the default, not an error.
    let (status, v) = rest
        .execute_body(&ctx, json!({"code": "1", "timeout": 0}))
        .await;
    assert_eq!(
        (status, &v["success"]),
        (StatusCode::OK, &json!(true)),
        "{v}"
    );
    host.shutdown().await.expect("shutdown");

    // INTERNAL: the backend cannot start a sandbox for the context.
    let broken = Arc::new(
        LocalBackend::with_sandboxd("/nonexistent/sandboxd".into())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let host = InProcessHost::start(broken, InProcessOptions::default())
        .await
        .expect("in-process host");
    let rest = Rest::new(&host);
    let (status, v) = rest
        .call(Method::POST, "/api/v1/contexts", Some(json!({})))
        .await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::INTERNAL_SERVER_ERROR, &json!("INTERNAL")),
        "{v}"
    );
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn basic_auth_guards_the_api_but_not_health() {
    let (host, _backend) = start(InProcessOptions {
        basic_auth: Some(BasicAuth::parse("ann:s3cret").expect("credentials")),
        ..InProcessOptions::default()
    })
    .await;
    let plain = Rest::new(&host);
    for rest in [Rest::new(&host), Rest::new(&host).with_auth("ann", "wrong")] {
        let (status, v) = rest.call(Method::GET, "/api/v1/contexts", None).await;
        assert_eq!(
            (status, &v["code"]),
            (StatusCode::UNAUTHORIZED, &json!("UNAUTHORIZED"))
        );
    }
    let resp = plain
        .http
        .get(format!("{}/api/v1/contexts", plain.base))
        .send()
        .await
        .expect("get");
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"agent-runtime\"")
    );
    let health = reqwest::get(format!("{}/health", plain.base))
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    let (status, v) = Rest::new(&host)
        .with_auth("ann", "s3cret")
        .call(Method::GET, "/api/v1/contexts", None)
        .await;
    assert_eq!((status, v), (StatusCode::OK, json!([])));
    host.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn rest_reaches_only_its_own_contexts_and_finds_them_after_a_restart() {
    let (first, backend) = start(InProcessOptions::default()).await;
    let rest = Rest::new(&first);

    // A sandbox made over gRPC (anonymous) may be named; one a token owns may not, with the
    // same answer as for one that does not exist.
    let shared = first
        .manager
        .create(CreateSpec::default())
        .await
        .expect("sandbox");
    let owned = first
        .manager
        .create(CreateSpec::owned_by("alice"))
        .await
        .expect("sandbox");
    let (status, refused) = rest
        .call(
            Method::POST,
            "/api/v1/contexts",
            Some(json!({"sandbox_id": owned.id.as_str()})),
        )
        .await;
    let (_, missing) = rest
        .call(
            Method::POST,
            "/api/v1/contexts",
            Some(json!({"sandbox_id": "sb-0123456789ab"})),
        )
        .await;
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::BAD_REQUEST, &json!("BAD_REQUEST"))
    );
    assert_eq!(
        refused["error"]
            .as_str()
            .map(|e| e.replace(owned.id.as_str(), "ID")),
        missing["error"]
            .as_str()
            .map(|e| e.replace("sb-0123456789ab", "ID"))
    );

    let named = rest.create(json!({"sandbox_id": shared.id.as_str()})).await;
    let named = named["context_id"].as_str().expect("id").to_owned();
    let own = rest.create(json!({"session_name": "own"})).await;
    let own_sandbox = own["sandbox_id"].as_str().expect("sandbox").to_owned();
    let own = own["context_id"].as_str().expect("id").to_owned();
    rest.execute(&own, "y = 'kept'").await;

    // A context made over gRPC in the shared sandbox is not REST's.
    let mut daemon = sandbox_client(first.manager.channel(&shared.id).expect("channel"));
    let foreign = daemon
        .create_context(with_sandbox(
            CreateContextRequest {
                language: "python".into(),
                ..Default::default()
            },
            &shared.id,
        ))
        .await
        .expect("gRPC context")
        .into_inner()
        .context_id;
    let (status, v) = rest.execute(&foreign, "1").await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::NOT_FOUND, &json!("CONTEXT_NOT_FOUND"))
    );

    // Deleting the context in the named sandbox leaves that sandbox alone.
    let (status, _) = rest
        .call(Method::DELETE, &format!("/api/v1/contexts/{named}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        first.manager.get(&shared.id).is_ok(),
        "the named sandbox stays"
    );

    // After a restart over the same sandboxes, REST finds the context in its own sandbox again,
    // with its state, and still not the foreign one.
    let key = first.host_key.clone();
    first.shutdown().await.expect("shutdown");
    let opts = InProcessOptions {
        host_key: Some(key),
        ..InProcessOptions::default()
    };
    let second = InProcessHost::start(backend, opts)
        .await
        .expect("in-process host");
    let rest = Rest::new(&second);
    // Adopted sandboxes are probed after the ports open; discovery asks running ones only.
    let own_sandbox = SandboxId::parse(own_sandbox.as_str()).expect("id");
    let running = tokio::time::timeout(PATIENCE, async {
        while second.manager.get(&own_sandbox).map(|r| r.status).ok()
            != Some(SandboxStatus::Running)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(running.is_ok(), "the context's sandbox was not adopted");
    let (_, v) = rest.execute(&own, "print(y)").await;
    assert_eq!(v["output"]["stdout"], "kept\n", "{v}");
    let (_, listed) = rest.call(Method::GET, "/api/v1/contexts", None).await;
    let ids: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["context_id"].as_str())
        .collect();
    assert_eq!(ids, [own.as_str()], "{listed}");
    let (status, _) = rest.execute(&foreign, "1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    second.shutdown().await.expect("shutdown");
}
