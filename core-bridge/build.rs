//! The keys of the sources the exec wrapper and the sandbox helper are
//! built from (`exec-wrapper/tools_key.rs`): a tool from another build
//! directory is used only when it carries the same (`src/tools.rs`).
include!("../exec-wrapper/tools_key.rs");
include!("../exec-wrapper/tools_sources.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    set_both_tools_keys()?;
    Ok(())
}
