//! The exec wrapper, built for the end-to-end tests (see Cargo.toml).
#![no_main]

#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    execgate_exec_wrapper::main()
}
