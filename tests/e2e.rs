//! End-to-end suites: every test drives the real patched zsh (built by
//! `scripts/build-zsh.sh`), the real exec wrapper and a real escalation
//! server, and checks what happened in processes, files and events.

// In a test harness a panic is the failure report, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
