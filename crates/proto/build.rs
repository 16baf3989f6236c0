//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building needs no `protoc`
//! on the machine, and keeps the file descriptor set for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "mentorstream/common/v1/common.proto",
    "mentorstream/activity/v1/activity.proto",
    "mentorstream/ingest/v1/ingest.proto",
    "mentorstream/ingest/v1/webhooks.proto",
    "mentorstream/kpi/v1/kpi.proto",
    "mentorstream/kpi/v1/kpi_service.proto",
    "mentorstream/mentorship/v1/resources.proto",
    "mentorstream/mentorship/v1/impact.proto",
    "mentorstream/mentorship/v1/events.proto",
    "mentorstream/mentorship/v1/mentorship_service.proto",
    "mentorstream/mentorship/v1/actions.proto",
    "mentorstream/mentorship/v1/dashboard.proto",
    "mentorstream/notification/v1/notification.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    // Every file, not the directory: a directory's modification time does not change when a
    // file in it is edited.
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let descriptors = protox::compile(FILES, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("mentorstream_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Unimplemented RPCs answer UNIMPLEMENTED instead of failing to compile.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
