//! mcp-bridge is not built yet (issue 6). This binary says so instead of pretending to serve MCP.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "mcp-bridge is not implemented yet: use the gRPC API (agent-runtime serve, port 50051) meanwhile"
    )
}
