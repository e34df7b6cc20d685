//! execgate's managed network: the model that decides which destinations a
//! command in a `limited` sandbox may reach.
//!
//! A `limited` sandbox has no route out except to execgate's proxy, which
//! runs outside the sandbox and decides every connection on its destination:
//! the host as the client named it, the addresses it resolves to, the port
//! and the protocol. This crate holds the parts of that decision that need
//! no I/O, so that they can be tested exhaustively and reused by the proxy,
//! `execgate policy check --network` and the profile loader:
//!
//! - [`Destination::parse`] turns what a client sent (`Example.COM.`,
//!   `[::1]`, `2852039166`, `0x7f.1`) into one canonical form: a lowercase
//!   host name without its trailing dot, or an IP address (a v4-mapped
//!   IPv6 address as the IPv4 address it maps). Numeric host
//!   names are read the way the C library's `inet_aton` reads them, because
//!   that is how the tools behind the proxy would reach them; a host name
//!   that ends in a numeric label but is no valid address is refused rather
//!   than guessed at.
//! - [`DomainList`] holds a profile's `domains` table: `example.com` matches
//!   exactly, `*.example.com` only subdomains, `**.example.com` the apex and
//!   its subdomains. A deny entry always wins over an allow entry, and a
//!   bare `*` is refused in a deny list (it would deny everything while
//!   reading like a default).
//! - [`classify`] says whether an address is public. Loopback, private,
//!   link-local, shared (CGNAT), documentation, benchmarking, multicast,
//!   reserved and unspecified ranges are not, in IPv4 and IPv6 alike, and an
//!   IPv6 address that embeds an IPv4 one (v4-mapped, v4-compatible, NAT64,
//!   6to4) is judged by the address it embeds. [`classify_from_here`] adds
//!   this machine's own public addresses (a connection to one reaches what
//!   listens on every address, as loopback does), read from its interfaces.
//! - [`serve_connection`] is the proxy's one connection: it reads the
//!   request, asks a [`Decider`], resolves a name once (the name itself,
//!   never one the resolver's search list makes of it) and connects only to
//!   an address it checked, refusing non-public ones (this machine's own
//!   included) unless a list names the destination exactly.
//!
//! What this crate must never do: connect anywhere it has not checked, or
//! turn an input it cannot read into a default decision. Anything it cannot
//! parse is an error, and the connection is refused.

mod address;
mod host;
mod proxy;
mod resolve;
#[cfg(target_os = "linux")]
mod splice;

pub use address::{classify, classify_from_here, AddressClass, NonPublicRange};
pub use host::{
    Destination, DestinationError, DomainList, DomainListError, DomainPattern, HostName,
    ListDecision, ListMatch,
};
pub use proxy::{
    list_verdict, serve_connection, ConnectRequest, ConnectionOutcome, ConnectionReport, Decider,
    NonPublicAddresses, Protocol, Verdict,
};
