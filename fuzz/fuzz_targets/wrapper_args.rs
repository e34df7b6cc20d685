//! The wrapper's command line, as NUL-separated arguments: never a panic,
//! and what parses has an absolute path, a descriptor that is not negative
//! and a non-empty argument vector.

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use execgate_protocol::WrapperArgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let args: Vec<OsString> = input
        .split(|&b| b == 0)
        .map(|arg| std::ffi::OsStr::from_bytes(arg).to_owned())
        .collect();
    let count = args.len();
    let Ok(parsed) = WrapperArgs::parse(args.into_iter()) else {
        return;
    };
    assert!(parsed.path.is_absolute());
    assert!(parsed.socket_fd.is_none_or(|fd| fd >= 0));
    assert!(!parsed.argv.is_empty());
    assert_eq!(parsed.argv.len(), count - 6);
});
