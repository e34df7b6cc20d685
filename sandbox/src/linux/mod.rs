//! Enforcement on Linux: the bubblewrap command line (`bwrap.rs`) and the
//! loader's variables carried past it (`carried.rs`), the
//! helper that runs inside it and adds Landlock and seccomp (`helper.rs`),
//! the supervisor that decides what must be decided call by call
//! (`supervisor.rs`), the hand-over of a limited network's listener to the
//! proxy (`proxy_link.rs`), the order that completes a sandbox started
//! ahead of its command (`spare.rs`), what the machine provides (`doctor.rs`), the
//! other names the host's mounts give a directory (`aliases.rs`), the umask,
//! limits and ignored signals an escalated program is started with
//! (`inheritance.rs`), bubblewrap's word that it set a sandbox up
//! (`started.rs`), and the raw
//! calls they need (`sys.rs`, the only `unsafe` on this side).

mod aliases;
mod bwrap;
mod carried;
mod doctor;
mod helper;
mod inheritance;
mod proxy_link;
mod spare;
mod started;
mod supervisor;
mod sys;

pub use aliases::MountAliases;
pub use bwrap::{CommandWatch, Launcher, Terminal, BWRAP_PATHS, HIDDEN_SERVICE_DIRS};
pub use doctor::{MachineReport, REQUIRED_LANDLOCK_ABI, SCOPES_LANDLOCK_ABI};
pub use helper::{helper_main, SETUP_FAILED};
pub use inheritance::Inheritance;
pub use proxy_link::{is_proxy_variable, LISTENER_MESSAGE, PROXY_MARKER};
pub use spare::{hand_order, reported_end, ReportedEnd, SpareOrder, MOST_DESCRIPTORS};
pub use started::SandboxStart;
pub use supervisor::{openat2_settled, UNCREATABLE_NAMES};
