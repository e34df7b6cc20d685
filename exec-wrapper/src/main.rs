//! The wrapper binary. `no_main`: Rust's start-up would set `SIGPIPE` to
//! ignored, and an ignored signal survives execve, so every program run in
//! place would inherit it. Skipping that start-up also makes the wrapper
//! start faster.
#![no_main]

#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // std reads argv and the environment itself (glibc hands them over
    // before main), so the raw pointers are not needed here.
    execgate_exec_wrapper::main()
}
