//! `#!` lines as the kernel reads them: never a panic, and what is parsed
//! is within the first 256 bytes, an interpreter without blanks or line
//! ends and an argument trimmed of blanks.

#![no_main]

use execgate_protocol::{looks_like_shell_text, parse_shebang, SHEBANG_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|head: &[u8]| {
    let _ = looks_like_shell_text(head);
    let Some(shebang) = parse_shebang(head) else {
        return;
    };
    assert!(head.starts_with(b"#!"));
    let interpreter = shebang.interpreter.as_encoded_bytes();
    assert!(!interpreter.is_empty());
    assert!(!interpreter
        .iter()
        .any(|b| matches!(b, b' ' | b'\t' | b'\n')));
    let mut parsed = 2 + interpreter.len();
    if let Some(argument) = &shebang.argument {
        let argument = argument.as_encoded_bytes();
        let is_blank = |b: &u8| matches!(b, b' ' | b'\t');
        assert!(!argument.is_empty());
        assert!(!argument.contains(&b'\n'));
        assert!(!argument.first().is_some_and(is_blank));
        assert!(!argument.last().is_some_and(is_blank));
        parsed += 1 + argument.len();
    }
    assert!(
        parsed <= SHEBANG_LIMIT,
        "parsed {parsed} bytes of a {SHEBANG_LIMIT}-byte line"
    );
});
