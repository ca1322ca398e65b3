//! Compiles the `.proto` files with a vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("agent_runtime_descriptor.bin"))
        // Egress bytes pass through without a copy into a Vec on either side.
        .bytes(".agent_runtime.v1.EgressFrame.data")
        .bytes(".agent_runtime.v1.SpanBatch.otlp_export_trace_service_request")
        .compile_protos(
            &[
                "agent_runtime/v1/sandbox.proto",
                "agent_runtime/v1/sandboxes.proto",
                "agent_runtime/v1/egress.proto",
                "agent_runtime/v1/telemetry.proto",
            ],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=agent_runtime");
    Ok(())
}
