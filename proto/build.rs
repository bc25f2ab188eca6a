//! Compiles `signer/v1/signer.proto` with protox (pure Rust) and generates
//! the message types and the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=signer/v1/signer.proto");
    let files = protox::compile(["signer/v1/signer.proto"], ["."])?;
    tonic_prost_build::configure()
        // The generated client's `connect` helper would pull in tonic's transport.
        .build_transport(false)
        // Malformed protobuf is the caller's error: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(files)?;
    Ok(())
}
