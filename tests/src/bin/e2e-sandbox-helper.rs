//! The sandbox's inner helper, built for the end-to-end tests (see
//! Cargo.toml).

/// The key of this build's helper, as the installed one carries it
/// (`tests/build.rs`).
static TOOLS_KEY: &str = env!("EXECGATE_HELPER_TOOLS_KEY");

fn main() -> std::process::ExitCode {
    // Keeps the key in the binary: nothing else refers to it.
    std::hint::black_box(TOOLS_KEY);
    execgate_sandbox::helper_main()
}
