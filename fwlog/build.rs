//! Builds the eBPF object (fwlog-ebpf) with nightly and bpf-linker, so that `include_bytes!` can
//! embed it in the fwlog binary. `cargo xtask setup` installs what this needs.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf_dir = PathBuf::from(manifest_dir).join("../fwlog-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("the path {} is not UTF-8", ebpf_dir.display()))?;
    let package = aya_build::Package {
        name: "fwlog-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .context("building the eBPF programs (is bpf-linker installed? run `cargo xtask setup`)")
}
