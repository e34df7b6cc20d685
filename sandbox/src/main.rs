//! `execgate-sandbox-helper`: the inner stage of execgate's Linux sandbox.
//! bubblewrap starts it inside the view; see `execgate_sandbox::helper_main`.

/// The key of the sources this binary was built from, which `execgate`
/// looks for in a helper from another build directory before it uses it
/// (core-bridge/src/tools.rs).
#[cfg(target_os = "linux")]
static TOOLS_KEY: &str = env!("EXECGATE_TOOLS_KEY");

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    // Keeps the key in the binary: nothing else refers to it.
    std::hint::black_box(TOOLS_KEY);
    execgate_sandbox::helper_main()
}

/// Elsewhere there is no bubblewrap view to be the inner stage of.
#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("execgate-sandbox-helper: only Linux has this stage; nothing to do here");
    std::process::ExitCode::from(2)
}
