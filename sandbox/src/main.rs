//! `execgate-sandbox-helper`: the inner stage of execgate's Linux sandbox.
//! bubblewrap starts it inside the view; see `execgate_sandbox::helper_main`.

fn main() -> std::process::ExitCode {
    execgate_sandbox::helper_main()
}
