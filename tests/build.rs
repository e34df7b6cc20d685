//! The e2e wrapper and helper are this build's tools, built from the same
//! sources as the installed ones: they carry the same keys
//! (`exec-wrapper/tools_key.rs`), which a session checks its tools for
//! (`core-bridge/src/tools.rs`).
include!("../exec-wrapper/tools_key.rs");
include!("../exec-wrapper/tools_sources.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    set_both_tools_keys()?;
    Ok(())
}
