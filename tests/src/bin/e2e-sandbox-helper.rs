//! The sandbox's inner helper, built for the end-to-end tests (see
//! Cargo.toml).

fn main() -> std::process::ExitCode {
    execgate_sandbox::helper_main()
}
