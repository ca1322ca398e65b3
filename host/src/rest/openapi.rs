//! The OpenAPI document of the REST API, generated from the routes (`router.rs`) and the JSON
//! shapes (`api.rs`). `openapi.json` beside this file is its golden copy: a change to the API
//! shows as a diff there, and a test fails until the copy is renewed
//! (`UPDATE_GOLDEN=1 cargo test -p agent-runtime --lib rest::openapi`).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, ServerBuilder};

use super::api::{ErrorBody, StreamLine};

/// Everything the routes do not say: title, server, Basic authentication (optional), the error
/// body and the streamed line.
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("Agent Runtime REST API")
        .version("1.0.0")
        .description(Some(
            "Stateful Python contexts (Jupyter kernels) in sandboxes. Every error is \
             {\"error\": string, \"code\": string} (the Error schema lists the codes). HTTP \
             Basic authentication when the host is started with credentials.",
        ))
        .build();
    let components = ComponentsBuilder::new()
        .schema_from::<ErrorBody>()
        .schema_from::<StreamLine>()
        .security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        )
        .build();
    OpenApiBuilder::new()
        .info(info)
        .servers(Some([ServerBuilder::new()
            .url("http://127.0.0.1:8080")
            .build()]))
        .components(Some(components))
        .security(Some([
            SecurityRequirement::default(),
            SecurityRequirement::new("basic", Vec::<String>::new()),
        ]))
        .build()
}

/// The document as served: pretty JSON with a final newline.
pub fn render(doc: &OpenApi) -> String {
    let mut text = doc.to_pretty_json().unwrap_or_else(|e| {
        // Serialising plain maps and strings cannot fail; say so in the document if it does.
        format!("{{\"error\": \"the OpenAPI document could not be rendered: {e}\"}}")
    });
    text.push('\n');
    text
}

/// The generated document.
pub fn document() -> OpenApi {
    super::router::documented_routes(None).into_openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/rest/openapi.json");

    #[test]
    fn the_document_matches_its_golden_copy() {
        let generated = render(&document());
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(GOLDEN, &generated).expect("write the golden copy");
        }
        let golden = std::fs::read_to_string(GOLDEN).unwrap_or_default();
        assert!(
            golden == generated,
            "the REST API's OpenAPI document changed: review the diff of {GOLDEN} after \
             UPDATE_GOLDEN=1 cargo test -p agent-runtime --lib rest::openapi"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc: serde_json::Value =
            serde_json::from_str(&render(&document())).expect("the document is JSON");
        let routes = [
            ("/health", "get", &["200"][..]),
            (
                "/api/v1/contexts",
                "post",
                &["201", "400", "401", "408", "429", "500"],
            ),
            ("/api/v1/contexts", "get", &["200", "401"]),
            (
                "/api/v1/contexts/{id}",
                "get",
                &["200", "401", "404", "408", "500"],
            ),
            (
                "/api/v1/contexts/{id}",
                "delete",
                &["200", "401", "404", "408", "500"],
            ),
            (
                "/api/v1/contexts/{id}/execute",
                "post",
                &["200", "400", "401", "404", "408", "500"],
            ),
        ];
        for (path, method, statuses) in routes {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is not documented");
            for status in statuses {
                let r = &op["responses"][status];
                assert!(r.is_object(), "{method} {path} does not document {status}");
                if !status.starts_with('2') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
        let paths = doc["paths"].as_object().expect("paths");
        let documented: usize = paths
            .values()
            .map(|p| {
                p.as_object()
                    .map_or(0, |p| p.keys().filter(|k| *k != "parameters").count())
            })
            .sum();
        assert_eq!(documented, routes.len(), "{:?}", paths.keys());
    }
}
