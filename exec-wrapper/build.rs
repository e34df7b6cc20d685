//! Links the wrapper binary statically (glibc, static-pie), so that the
//! wrapper a plain `cargo build` leaves beside `execgate` is a fast one:
//! it runs for every escalation (and did for every exec before zsh asked
//! itself), and a dynamic one pays the loader (mapping and relocating libc)
//! each time, about 0.5 ms here (BENCHMARKS.md). The static musl build of
//! `scripts/build-wrapper` is faster still, and `execgate` prefers it when
//! it carries the key of the same sources (`tools_key.rs`), set here.
//!
//! rustc links the GNU target's system libraries dynamically
//! (`-Wl,-Bdynamic -lgcc_s ... -lc`) and a crate cannot set
//! `-C target-feature=+crt-static` for itself alone (as a workspace flag it
//! would break proc-macros). So for the binaries only, this puts a directory
//! first in the linker's search path where each of those libraries is a
//! one-line linker script naming its static archive, and asks gcc for
//! `-static-pie`. The library target (linked into the tests and the bench)
//! is untouched. If the compiler has no static archive for one of them, the
//! build fails: a silently dynamic wrapper is what this exists to prevent.
include!("static_glibc.rs");
include!("tools_key.rs");
include!("tools_sources.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let key = tools_key(&workspace_root(), WRAPPER_SOURCES)?;
    println!("cargo:rustc-env=EXECGATE_TOOLS_KEY={WRAPPER_KEY_MARKER}{key}");
    link_bins_statically();
    Ok(())
}
