//! `execgate-sandbox-helper`: the inner stage of execgate's Linux sandbox.
//! bubblewrap starts it inside the view; see `execgate_sandbox::helper_main`.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    execgate_sandbox::helper_main()
}

/// Elsewhere there is no bubblewrap view to be the inner stage of.
#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("execgate-sandbox-helper: only Linux has this stage; nothing to do here");
    std::process::ExitCode::from(2)
}
