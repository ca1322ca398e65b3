//! The CLI's side of the host's bearer tokens: `AGENT_RUNTIME_TOKEN` goes on every call.

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Environment variable holding the token the CLI (and mcp-bridge) present to the host.
pub const TOKEN_ENV: &str = "AGENT_RUNTIME_TOKEN";

/// A channel to the host that carries the caller's token.
pub type HostChannel = InterceptedService<Channel, TokenInterceptor>;

/// Adds `authorization: Bearer <token>` when a token is configured.
#[derive(Clone, Debug, Default)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl TokenInterceptor {
    /// The interceptor for the token in [`TOKEN_ENV`] (none when unset or empty).
    pub fn from_env() -> anyhow::Result<Self> {
        let token = std::env::var(TOKEN_ENV).unwrap_or_default();
        let token = token.trim();
        if token.is_empty() {
            return Ok(Self::default());
        }
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow::anyhow!("{TOKEN_ENV} holds characters a header cannot carry"))?;
        Ok(Self {
            header: Some(header),
        })
    }
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// Wraps a channel so every call carries the configured token.
pub fn with_token(channel: Channel) -> anyhow::Result<HostChannel> {
    Ok(InterceptedService::new(
        channel,
        TokenInterceptor::from_env()?,
    ))
}
