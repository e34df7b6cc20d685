//! Destinations as clients name them, and the `domains` lists that decide
//! them.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::address::{ends_in_number, parse_ipv4_shorthand};

/// A host name in canonical form: ASCII, lowercase, no trailing dot, every
/// label 1 to 63 bytes of letters, digits, `-` and `_`, and not numeric at
/// the end (that would be an address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` is `apex` or lies under it.
    fn is_within(&self, apex: &HostName) -> bool {
        self == apex || self.is_strictly_under(apex)
    }

    fn is_strictly_under(&self, apex: &HostName) -> bool {
        self.0.len() > apex.0.len()
            && self.0.ends_with(apex.as_str())
            && self.0.as_bytes()[self.0.len() - apex.0.len() - 1] == b'.'
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a client asked to connect: a host name or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Name(HostName),
    Address(IpAddr),
}

/// Why a destination could not be read. The connection is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    #[error("the destination host is empty")]
    Empty,
    #[error("`{}` is not an IPv6 address", shown(.0))]
    BadIpv6(String),
    #[error("`{}` ends in a number but is not an IPv4 address", shown(.0))]
    NumericHost(String),
    #[error("`{}` is not ASCII; give an internationalized name in its xn-- form", shown(.0))]
    NotAscii(String),
    #[error("`{}` is not a valid host name: {reason}", shown(.host))]
    BadName { host: String, reason: &'static str },
    #[error("`{}` is not a host and port: {reason}", shown(.authority))]
    BadAuthority {
        authority: String,
        reason: &'static str,
    },
}

/// The most of a client's text an error quotes: a refusal is recorded,
/// and answered, with its reason (probe 241: a 32 KiB host made a 32 KiB
/// record of each refused connection).
const QUOTED_AT_MOST: usize = 256;

/// `text` as an error quotes it: its first [`QUOTED_AT_MOST`] bytes, and
/// how long it was when it is longer.
pub(crate) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= QUOTED_AT_MOST {
        return text.into();
    }
    let mut end = QUOTED_AT_MOST;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len()).into()
}

impl Destination {
    /// `address` as a destination, in canonical form: a v4-mapped IPv6
    /// address (`::ffff:1.1.1.99`, `::ffff:101:163`) is the IPv4 address it
    /// maps, since a connection to it reaches that IPv4 host. Rules, lists,
    /// prompts and the audit then see one address, however it was spelled.
    ///
    /// An IPv4-compatible address (`::1.1.1.99`, deprecated since 2006)
    /// stays IPv6: nothing delivers it to the IPv4 host (the kernel sends
    /// it as IPv6 to `::/96`), and [`classify`](crate::classify) refuses it
    /// as non-public unless a list entry names it exactly. NAT64
    /// (`64:ff9b::/96`) and 6to4 addresses stay IPv6 too: they are other
    /// addresses, judged by the IPv4 address they carry only for whether
    /// they are public.
    ///
    /// An unspecified address (`0.0.0.0`, `::`) is the loopback address a
    /// connection to it reaches (the kernel connects it to this machine,
    /// from and to its loopback): asked for as `0.0.0.0`, a service a
    /// `forbidden` rule, a deny entry or a person's "deny for the session"
    /// shut on `127.0.0.1` was reached (probe 162).
    pub fn address(address: IpAddr) -> Destination {
        Destination::Address(reached(address))
    }

    /// Reads a host as a client sent it: `[v6]` or a bare IPv6 address (a
    /// zone such as `%eth0` is dropped: the address alone decides; a
    /// v4-mapped one is its IPv4 address, see [`Destination::address`]), an
    /// IPv4 address in any form `inet_aton` accepts, or a host name,
    /// lowercased and without its trailing dot.
    pub fn parse(host: &str) -> Result<Destination, DestinationError> {
        if host.is_empty() {
            return Err(DestinationError::Empty);
        }
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| DestinationError::BadIpv6(host.to_owned()))?;
            return parse_ipv6(inner)
                .map(Destination::address)
                .map_err(|_| DestinationError::BadIpv6(host.to_owned()));
        }
        if host.contains(':') {
            return parse_ipv6(host).map(Destination::address);
        }
        if !host.is_ascii() {
            return Err(DestinationError::NotAscii(host.to_owned()));
        }
        let lowered = host.to_ascii_lowercase();
        let name = lowered.strip_suffix('.').unwrap_or(&lowered);
        if ends_in_number(name) {
            return parse_ipv4_shorthand(name)
                .map(|v4| Destination::address(IpAddr::V4(v4)))
                .ok_or_else(|| DestinationError::NumericHost(host.to_owned()));
        }
        check_labels(name)
            .map(|()| Destination::Name(HostName(name.to_owned())))
            .map_err(|reason| DestinationError::BadName {
                host: host.to_owned(),
                reason,
            })
    }
}

/// The address a connection to `address` reaches: the IPv4 address a
/// v4-mapped one maps, the loopback address for an unspecified one; any
/// other, as it is. See [`Destination::address`].
pub(crate) fn reached(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        canonical => canonical,
    }
}

impl Destination {
    /// Reads `host:port` or `[v6]:port`, or a host alone when
    /// `default_port` says which port that means; the host as
    /// [`Destination::parse`] reads it, the port from 1 to 65535.
    pub fn parse_authority(
        authority: &str,
        default_port: Option<u16>,
    ) -> Result<(Destination, u16), DestinationError> {
        let bad = |reason| DestinationError::BadAuthority {
            authority: authority.to_owned(),
            reason,
        };
        let (host, port) = if authority.starts_with('[') {
            let end = authority.rfind(']').ok_or_else(|| bad("no closing `]`"))?;
            let port = authority[end + 1..].strip_prefix(':');
            if port.is_none() && end + 1 != authority.len() {
                return Err(bad("text after the address"));
            }
            (&authority[..=end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match (port, default_port) {
            (Some(port), _) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            (None, Some(default)) => default,
            (None, None) => return Err(bad("no port")),
        };
        Ok((Destination::parse(host)?, port))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Name(name) => name.fmt(f),
            Destination::Address(IpAddr::V4(v4)) => v4.fmt(f),
            Destination::Address(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
        }
    }
}

fn parse_ipv6(text: &str) -> Result<IpAddr, DestinationError> {
    let without_zone = text
        .split_once('%')
        .map_or(text, |(address, _zone)| address);
    without_zone
        .parse::<Ipv6Addr>()
        .map(IpAddr::V6)
        .map_err(|_| DestinationError::BadIpv6(text.to_owned()))
}

fn check_labels(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 253 {
        return Err("it is longer than 253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return Err("labels may hold only letters, digits, `-` and `_`");
        }
    }
    Ok(())
}

/// One key of a `domains` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// `example.com` or `192.0.2.7`: that destination only.
    Exact(Destination),
    /// `*.example.com`: names under it, not the apex.
    Subdomains(HostName),
    /// `**.example.com`: the apex and the names under it.
    ApexAndSubdomains(HostName),
    /// `*`: every host name (addresses must be named).
    Everything,
}

impl DomainPattern {
    pub fn matches(&self, destination: &Destination) -> bool {
        match (self, destination) {
            // Every name, not addresses: an address must be named (or
            // approved), else `*` beside a deny entry for a name would let
            // that name's own address through.
            (DomainPattern::Everything, Destination::Name(_)) => true,
            (DomainPattern::Everything, Destination::Address(_)) => false,
            // Compared as [`Destination::parse`] reads them: the variants
            // are public, and a v4-mapped address built by hand is still
            // the IPv4 host a rule or entry on that address names.
            (DomainPattern::Exact(exact), _) => same_destination(exact, destination),
            (DomainPattern::Subdomains(apex), Destination::Name(name)) => {
                name.is_strictly_under(apex)
            }
            (DomainPattern::ApexAndSubdomains(apex), Destination::Name(name)) => {
                name.is_within(apex)
            }
            (
                DomainPattern::Subdomains(_) | DomainPattern::ApexAndSubdomains(_),
                Destination::Address(_),
            ) => false,
        }
    }
}

fn same_destination(one: &Destination, other: &Destination) -> bool {
    match (one, other) {
        (Destination::Address(one), Destination::Address(other)) => {
            one.to_canonical() == other.to_canonical()
        }
        _ => one == other,
    }
}

/// Reads the host of a pattern (after its `*.` or `**.`, given as
/// `wildcard`). One written with a port (`a.com:443`, `[::1]:8080`) is
/// refused for that, with what to write, rather than as a bad IPv6 address
/// (its `:` makes it look like one).
fn pattern_host(pattern: &str, wildcard: &str, host: &str) -> Result<Destination, DomainListError> {
    let invalid = |reason: String| DomainListError::BadPattern {
        pattern: pattern.to_owned(),
        reason,
    };
    // Probe 136: `http://vm` was refused as "not an IPv6 address".
    if let Some((scheme, rest)) = host.split_once("://") {
        let name = rest.split(['/', ':']).next().unwrap_or_default();
        return Err(invalid(format!(
            "entries name hosts, not URLs; write `{wildcard}{name}` (without `{scheme}://`: \
             every protocol and port of the host)"
        )));
    }
    Destination::parse(host).map_err(|error| match Destination::parse_authority(host, None) {
        Ok((Destination::Address(_), _)) if !wildcard.is_empty() => {
            invalid("a wildcard needs a domain, not an address".into())
        }
        Ok((without_port, port)) => invalid(format!(
            "entries name hosts, not ports; write `{wildcard}{without_port}`, which \
             covers every port (a network_rule with `port = {port}` decides one port)"
        )),
        Err(_) => invalid(error.to_string()),
    })
}

/// An entry naming one host. An address must be written as it is shown,
/// in dotted decimal: `inet_aton`'s other spellings (octal, hexadecimal,
/// fewer parts) are what a client may send, but in an entry they are far
/// more often a slip (`011.0.0.3` for 11.0.0.3) than meant.
fn exact_pattern(pattern: &str) -> Result<DomainPattern, DomainListError> {
    let written = pattern.strip_suffix('.').unwrap_or(pattern);
    let bare = written.trim_start_matches('[').trim_end_matches(']');
    // A zone (`%lo`) is dropped when the entry is read (review 35).
    let bare = bare.split('%').next().unwrap_or(bare);
    if let Some(unspecified) = bare
        .parse::<IpAddr>()
        .ok()
        .filter(|address| address.to_canonical().is_unspecified())
    {
        // Clients asking for it are judged as the loopback address it
        // reaches; an entry naming it would read as one thing and mean
        // another.
        return Err(DomainListError::BadPattern {
            pattern: pattern.to_owned(),
            reason: format!(
                "{unspecified} is the unspecified address, which a connection reaches as \
                 this machine's loopback; write {}",
                reached(unspecified)
            ),
        });
    }
    let destination = pattern_host(pattern, "", pattern)?;
    if let Destination::Address(IpAddr::V4(v4)) = destination {
        let written = pattern.strip_suffix('.').unwrap_or(pattern);
        if !written.contains(':') && written != v4.to_string() {
            return Err(DomainListError::BadPattern {
                pattern: pattern.to_owned(),
                reason: format!(
                    "it reads as the address {v4} (a part with a leading 0 is octal, 0x \
                     hexadecimal, and missing parts are zeros); write the address in dotted \
                     decimal, four parts, no leading zeros"
                ),
            });
        }
    }
    Ok(DomainPattern::Exact(destination))
}

impl FromStr for DomainPattern {
    type Err = DomainListError;

    fn from_str(pattern: &str) -> Result<DomainPattern, DomainListError> {
        let invalid = |reason: String| DomainListError::BadPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern == "*" {
            return Ok(DomainPattern::Everything);
        }
        let (wildcard, apex, make): (&str, &str, fn(HostName) -> DomainPattern) =
            if let Some(apex) = pattern.strip_prefix("**.") {
                ("**.", apex, DomainPattern::ApexAndSubdomains)
            } else if let Some(apex) = pattern.strip_prefix("*.") {
                ("*.", apex, DomainPattern::Subdomains)
            } else {
                return exact_pattern(pattern);
            };
        if apex.contains('*') {
            return Err(invalid(
                "`*` may only stand alone or as `*.` or `**.` before a domain".into(),
            ));
        }
        match pattern_host(pattern, wildcard, apex)? {
            Destination::Name(name) => Ok(make(name)),
            Destination::Address(_) => {
                Err(invalid("a wildcard needs a domain, not an address".into()))
            }
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(destination) => destination.fmt(f),
            DomainPattern::Subdomains(apex) => write!(f, "*.{apex}"),
            DomainPattern::ApexAndSubdomains(apex) => write!(f, "**.{apex}"),
            DomainPattern::Everything => f.write_str("*"),
        }
    }
}

/// What a `domains` entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListDecision {
    Allow,
    Deny,
}

impl FromStr for ListDecision {
    type Err = DomainListError;

    fn from_str(text: &str) -> Result<ListDecision, DomainListError> {
        match text {
            "allow" => Ok(ListDecision::Allow),
            "deny" => Ok(ListDecision::Deny),
            other => Err(DomainListError::BadDecision(other.to_owned())),
        }
    }
}

/// Why a `domains` table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainListError {
    #[error("`{pattern}` is not a domain pattern: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("`{0}` is neither \"allow\" nor \"deny\"")]
    BadDecision(String),
    #[error(
        "a bare `*` in a deny list would deny every destination; leave the destination \
         undecided (it is then asked about) or use restricted networking"
    )]
    DenyEverything,
}

/// The entry of a list that decided a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMatch {
    pub decision: ListDecision,
    pub pattern: DomainPattern,
}

impl ListMatch {
    /// Whether the entry names the destination itself rather than a
    /// wildcard: only such an entry lets a non-public address through.
    pub fn is_explicit(&self) -> bool {
        matches!(self.pattern, DomainPattern::Exact(_))
    }
}

/// A profile's `domains` table. Deny entries win over allow entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainList {
    allow: Vec<DomainPattern>,
    deny: Vec<DomainPattern>,
}

impl DomainList {
    pub fn new<'a>(
        entries: impl IntoIterator<Item = (&'a str, ListDecision)>,
    ) -> Result<DomainList, DomainListError> {
        let mut list = DomainList::default();
        for (pattern, decision) in entries {
            let pattern: DomainPattern = pattern.parse()?;
            match decision {
                ListDecision::Allow => list.allow.push(pattern),
                ListDecision::Deny if pattern == DomainPattern::Everything => {
                    return Err(DomainListError::DenyEverything);
                }
                ListDecision::Deny => list.deny.push(pattern),
            }
        }
        Ok(list)
    }

    /// The entries, deny entries first, as a `domains` table would hold
    /// them.
    pub fn entries(&self) -> impl Iterator<Item = (&DomainPattern, ListDecision)> {
        let deny = self
            .deny
            .iter()
            .map(|pattern| (pattern, ListDecision::Deny));
        deny.chain(
            self.allow
                .iter()
                .map(|pattern| (pattern, ListDecision::Allow)),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Every entry of both lists: what a profile with extra grants allows.
    /// A deny entry of either still wins.
    pub fn union(&self, other: &DomainList) -> DomainList {
        let mut union = self.clone();
        for (pattern, decision) in other.entries() {
            union.insert(pattern, decision);
        }
        union
    }

    /// The allow entries of `self` that `granted` holds too, and the deny
    /// entries of both: what is left of a requested list once a person or
    /// a skill granted part of it.
    pub fn intersection(&self, granted: &DomainList) -> DomainList {
        let mut kept = DomainList {
            allow: Vec::new(),
            deny: self.deny.clone(),
        };
        for pattern in &self.allow {
            if granted.allow.contains(pattern) {
                kept.insert(pattern, ListDecision::Allow);
            }
        }
        for pattern in &granted.deny {
            kept.insert(pattern, ListDecision::Deny);
        }
        kept
    }

    fn insert(&mut self, pattern: &DomainPattern, decision: ListDecision) {
        let patterns = match decision {
            ListDecision::Allow => &mut self.allow,
            ListDecision::Deny => &mut self.deny,
        };
        if !patterns.contains(pattern) {
            patterns.push(pattern.clone());
        }
    }

    /// The entry that decides `destination`, if any: the first deny entry
    /// that matches, else the most explicit allow entry that matches.
    pub fn decide(&self, destination: &Destination) -> Option<ListMatch> {
        let found = |patterns: &[DomainPattern], decision| {
            patterns
                .iter()
                .filter(|pattern| pattern.matches(destination))
                .min_by_key(|pattern| !matches!(pattern, DomainPattern::Exact(_)))
                .map(|pattern| ListMatch {
                    decision,
                    pattern: pattern.clone(),
                })
        };
        found(&self.deny, ListDecision::Deny).or_else(|| found(&self.allow, ListDecision::Allow))
    }
}

#[cfg(test)]
mod tests {
    /// Probe 241: a refusal quotes at most the first 256 bytes of what the
    /// client sent, with its length.
    #[test]
    fn a_long_host_is_quoted_cut_short() {
        let host = format!("{}.com", "é".repeat(16_000));
        let error = super::Destination::parse_authority(&format!("{host}:443"), None)
            .expect_err("not ASCII");
        let message = error.to_string();
        assert!(message.len() < 400, "{message}");
        assert!(
            message.contains(&format!("... ({} bytes)", host.len())),
            "{message}"
        );
    }

    use super::*;

    fn name(text: &str) -> Destination {
        Destination::Name(HostName(text.to_owned()))
    }

    fn address(text: &str) -> Destination {
        Destination::Address(text.parse().unwrap_or_else(|_| panic!("{text}")))
    }

    #[test]
    fn destinations_are_read_into_one_canonical_form() {
        let cases: Vec<(&str, Result<Destination, DestinationError>)> = vec![
            ("Example.COM.", Ok(name("example.com"))),
            ("crates.io", Ok(name("crates.io"))),
            ("_acme.example.com", Ok(name("_acme.example.com"))),
            ("[::1]", Ok(address("::1"))),
            ("::1", Ok(address("::1"))),
            ("[fe80::1%eth0]", Ok(address("fe80::1"))),
            ("[::ffff:127.0.0.1]", Ok(address("127.0.0.1"))),
            ("2852039166", Ok(address("169.254.169.254"))),
            ("0x7f.1", Ok(address("127.0.0.1"))),
            ("127.1.", Ok(address("127.0.0.1"))),
            ("0X7F000001", Ok(address("127.0.0.1"))),
            ("", Err(DestinationError::Empty)),
            ("[::1", Err(DestinationError::BadIpv6("[::1".into()))),
            (
                "[example.com]",
                Err(DestinationError::BadIpv6("[example.com]".into())),
            ),
            (
                "1.2.3.999",
                Err(DestinationError::NumericHost("1.2.3.999".into())),
            ),
            (
                "foo.123",
                Err(DestinationError::NumericHost("foo.123".into())),
            ),
            (
                "bücher.de",
                Err(DestinationError::NotAscii("bücher.de".into())),
            ),
            (
                "a..b",
                Err(DestinationError::BadName {
                    host: "a..b".into(),
                    reason: "it has an empty label",
                }),
            ),
            (
                "a b.com",
                Err(DestinationError::BadName {
                    host: "a b.com".into(),
                    reason: "labels may hold only letters, digits, `-` and `_`",
                }),
            ),
            (
                ".",
                Err(DestinationError::BadName {
                    host: ".".into(),
                    reason: "it is empty",
                }),
            ),
        ];
        let got: Vec<_> = cases
            .iter()
            .map(|(host, _)| (*host, Destination::parse(host)))
            .collect();
        assert_eq!(got, cases);
    }

    #[test]
    fn wildcard_forms_match_what_they_say() {
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "www.example.com", false),
            ("*.example.com", "example.com", false),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "notexample.com", false),
            ("*.example.com", "www.example.com.evil", false),
            ("**.example.com", "example.com", true),
            ("**.example.com", "a.b.example.com", true),
            ("**.example.com", "badexample.com", false),
            ("EXAMPLE.com.", "example.com", true),
            ("*", "anything.at.all", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.1", true),
            ("[::1]", "::1", true),
            ("*.example.com", "93.184.216.34", false),
            // A v4-mapped address is its IPv4 address, in a pattern and in
            // a destination alike.
            ("1.1.1.99", "[::ffff:1.1.1.99]", true),
            ("1.1.1.99", "::ffff:0101:0163", true),
            ("[::ffff:1.1.1.99]", "1.1.1.99", true),
            ("[::ffff:101:163]", "16843107", true),
            ("1.1.1.99", "[::1.1.1.99]", false),
            ("1.1.1.99", "[64:ff9b::1.1.1.99]", false),
        ];
        for (pattern, host, expected) in cases {
            let pattern: DomainPattern = pattern.parse().unwrap_or_else(|e| panic!("{e}"));
            let destination = Destination::parse(host).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                pattern.matches(&destination),
                expected,
                "{pattern} vs {host}"
            );
        }
    }

    /// Regression: a forbidden rule on 1.1.1.99 let `[::ffff:1.1.1.99]`
    /// through, a person was asked about `[::ffff:1.1.1.99]`, and a list
    /// entry so written allowed it: the mapped form was kept as IPv6.
    #[test]
    fn a_v4_mapped_address_is_read_as_its_ipv4_address() {
        // (as written, as a destination shows, as a pattern shows)
        let cases = [
            ("[::ffff:1.1.1.99]", "1.1.1.99", "1.1.1.99"),
            ("::ffff:1.1.1.99", "1.1.1.99", "1.1.1.99"),
            ("[::FFFF:0101:0163]", "1.1.1.99", "1.1.1.99"),
            ("[0:0:0:0:0:ffff:1.1.1.99]", "1.1.1.99", "1.1.1.99"),
            ("[::ffff:1.1.1.99%eth0]", "1.1.1.99", "1.1.1.99"),
            ("[::ffff:127.0.0.1]", "127.0.0.1", "127.0.0.1"),
            // Not the IPv4 host: IPv4-compatible (deprecated, refused as
            // non-public), NAT64 and 6to4 stay IPv6.
            ("[::1.1.1.99]", "[::101:163]", "[::101:163]"),
            (
                "[64:ff9b::1.1.1.99]",
                "[64:ff9b::101:163]",
                "[64:ff9b::101:163]",
            ),
            (
                "[2002:101:163::1]",
                "[2002:101:163::1]",
                "[2002:101:163::1]",
            ),
        ];
        let got: Vec<(&str, String, String)> = cases
            .iter()
            .map(|(text, ..)| {
                let destination = Destination::parse(text)
                    .map_or_else(|error| error.to_string(), |found| found.to_string());
                let pattern = text
                    .parse::<DomainPattern>()
                    .map_or_else(|error| error.to_string(), |found| found.to_string());
                (*text, destination, pattern)
            })
            .collect();
        let want: Vec<(&str, String, String)> = cases
            .iter()
            .map(|(text, destination, pattern)| {
                (*text, destination.to_string(), pattern.to_string())
            })
            .collect();
        assert_eq!(got, want);

        let mapped: IpAddr = "::ffff:1.1.1.99".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Destination::address(mapped), address("1.1.1.99"));
        // Built by hand, without `parse`: still the IPv4 host.
        let exact: DomainPattern = "1.1.1.99".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(exact.matches(&Destination::Address(mapped)));

        let list =
            DomainList::new([("1.1.1.99", ListDecision::Deny)]).unwrap_or_else(|e| panic!("{e}"));
        let decided = list
            .decide(&Destination::parse("[::ffff:1.1.1.99]").unwrap_or_else(|e| panic!("{e}")))
            .map(|found| found.decision);
        assert_eq!(decided, Some(ListDecision::Deny));
    }

    /// Regression: `"a.com:443"` was refused as "not an IPv6 address".
    #[test]
    fn a_pattern_with_a_port_is_told_to_name_the_host() {
        let cases = [
            (
                "a.com:443",
                "`a.com:443` is not a domain pattern: entries name hosts, not ports; write \
                 `a.com`, which covers every port (a network_rule with `port = 443` decides \
                 one port)",
            ),
            (
                "localhost:8000",
                "`localhost:8000` is not a domain pattern: entries name hosts, not ports; \
                 write `localhost`, which covers every port (a network_rule with `port = \
                 8000` decides one port)",
            ),
            (
                "**.a.com:443",
                "`**.a.com:443` is not a domain pattern: entries name hosts, not ports; write \
                 `**.a.com`, which covers every port (a network_rule with `port = 443` \
                 decides one port)",
            ),
            (
                "[::1]:8080",
                "`[::1]:8080` is not a domain pattern: entries name hosts, not ports; write \
                 `[::1]`, which covers every port (a network_rule with `port = 8080` decides \
                 one port)",
            ),
            (
                "127.0.0.1:80",
                "`127.0.0.1:80` is not a domain pattern: entries name hosts, not ports; write \
                 `127.0.0.1`, which covers every port (a network_rule with `port = 80` \
                 decides one port)",
            ),
            (
                "*.1.2.3.4:80",
                "`*.1.2.3.4:80` is not a domain pattern: a wildcard needs a domain, not an \
                 address",
            ),
            // No port 0: read as the address it is not.
            (
                "a.com:0",
                "`a.com:0` is not a domain pattern: `a.com:0` is not an IPv6 address",
            ),
            // Probe 136: a URL was "not an IPv6 address".
            (
                "http://vm",
                "`http://vm` is not a domain pattern: entries name hosts, not URLs; write \
                 `vm` (without `http://`: every protocol and port of the host)",
            ),
            (
                "*.https://a.com:443/x",
                "`*.https://a.com:443/x` is not a domain pattern: entries name hosts, not \
                 URLs; write `*.a.com` (without `https://`: every protocol and port of the \
                 host)",
            ),
        ];
        assert_parsed_as(&cases);
    }

    #[test]
    fn an_address_entry_is_written_in_dotted_decimal() {
        // A client may spell an address any way `inet_aton` reads it, and
        // is judged by the address; an entry that does so is most likely
        // a mistake (`011.0.0.3` is 9.0.0.3, octal), so it is refused with
        // the address it would have meant.
        let cases = [
            (
                "011.0.0.3",
                "`011.0.0.3` is not a domain pattern: it reads as the address 9.0.0.3 (a \
                 part with a leading 0 is octal, 0x hexadecimal, and missing parts are \
                 zeros); write the address in dotted decimal, four parts, no leading zeros",
            ),
            (
                "127.1",
                "`127.1` is not a domain pattern: it reads as the address 127.0.0.1 (a part \
                 with a leading 0 is octal, 0x hexadecimal, and missing parts are zeros); \
                 write the address in dotted decimal, four parts, no leading zeros",
            ),
            (
                "0x7f.0.0.1",
                "`0x7f.0.0.1` is not a domain pattern: it reads as the address 127.0.0.1 (a \
                 part with a leading 0 is octal, 0x hexadecimal, and missing parts are \
                 zeros); write the address in dotted decimal, four parts, no leading zeros",
            ),
            (
                "2130706433",
                "`2130706433` is not a domain pattern: it reads as the address 127.0.0.1 (a \
                 part with a leading 0 is octal, 0x hexadecimal, and missing parts are \
                 zeros); write the address in dotted decimal, four parts, no leading zeros",
            ),
            ("11.0.0.3", "accepted: 11.0.0.3"),
            ("11.0.0.3.", "accepted: 11.0.0.3"),
            // Probe 162: what a client reaches by it is the loopback.
            (
                "0.0.0.0",
                "`0.0.0.0` is not a domain pattern: 0.0.0.0 is the unspecified address, \
                 which a connection reaches as this machine's loopback; write 127.0.0.1",
            ),
            (
                "[::]",
                "`[::]` is not a domain pattern: :: is the unspecified address, which a \
                 connection reaches as this machine's loopback; write ::1",
            ),
            (
                "[::%lo]",
                "`[::%lo]` is not a domain pattern: :: is the unspecified address, which a \
                 connection reaches as this machine's loopback; write ::1",
            ),
            (
                "[::ffff:0.0.0.0%x]",
                "`[::ffff:0.0.0.0%x]` is not a domain pattern: ::ffff:0.0.0.0 is the \
                 unspecified address, which a connection reaches as this machine's loopback; \
                 write 127.0.0.1",
            ),
            ("[::ffff:11.0.0.3]", "accepted: 11.0.0.3"),
            ("::ffff:11.0.0.3", "accepted: 11.0.0.3"),
        ];
        assert_parsed_as(&cases);
    }

    /// Each pattern read, as its error or `accepted: ` and how it prints.
    fn assert_parsed_as(cases: &[(&str, &str)]) {
        let got: Vec<(&str, String)> = cases
            .iter()
            .map(|(pattern, _)| {
                let outcome = pattern
                    .parse::<DomainPattern>()
                    .map_or_else(|error| error.to_string(), |ok| format!("accepted: {ok}"));
                (*pattern, outcome)
            })
            .collect();
        let want: Vec<(&str, String)> = cases
            .iter()
            .map(|(pattern, message)| (*pattern, message.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for pattern in [
            "foo*.com",
            "*example.com",
            "a.*.com",
            "*.*.com",
            "*.1.2.3.4",
            "**",
            "",
        ] {
            assert!(
                pattern.parse::<DomainPattern>().is_err(),
                "`{pattern}` should be refused"
            );
        }
    }

    #[test]
    fn deny_wins_and_a_bare_star_cannot_deny() {
        let list = DomainList::new([
            ("**.github.com", ListDecision::Allow),
            ("gist.github.com", ListDecision::Deny),
            ("*", ListDecision::Allow),
            ("evil.example", ListDecision::Deny),
            ("127.0.0.1", ListDecision::Allow),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let decide = |host: &str| {
            list.decide(&Destination::parse(host).unwrap_or_else(|e| panic!("{e}")))
                .map(|found| {
                    (
                        found.decision,
                        found.pattern.to_string(),
                        found.is_explicit(),
                    )
                })
        };
        let allow = ListDecision::Allow;
        let deny = ListDecision::Deny;
        assert_eq!(
            decide("api.github.com"),
            Some((allow, "**.github.com".into(), false))
        );
        assert_eq!(
            decide("gist.github.com"),
            Some((deny, "gist.github.com".into(), true))
        );
        assert_eq!(
            decide("EVIL.example."),
            Some((deny, "evil.example".into(), true))
        );
        assert_eq!(decide("crates.io"), Some((allow, "*".into(), false)));
        assert_eq!(
            decide("0x7f000001"),
            Some((allow, "127.0.0.1".into(), true))
        );

        assert_eq!(
            DomainList::new([("*", ListDecision::Deny)]),
            Err(DomainListError::DenyEverything)
        );
        assert_eq!(DomainList::default().decide(&name("crates.io")), None);
        assert_eq!(
            "maybe".parse::<ListDecision>(),
            Err(DomainListError::BadDecision("maybe".into()))
        );
    }

    #[test]
    fn lists_combine_with_deny_entries_kept() {
        let list = |entries: &[(&str, ListDecision)]| {
            DomainList::new(entries.iter().copied()).unwrap_or_else(|e| panic!("{e}"))
        };
        let (allow, deny) = (ListDecision::Allow, ListDecision::Deny);
        let session = list(&[("crates.io", allow), ("evil.example", deny)]);
        let requested = list(&[
            ("crates.io", allow),
            ("**.npmjs.org", allow),
            ("pypi.org", allow),
        ]);
        let granted = list(&[("**.npmjs.org", allow), ("ads.npmjs.org", deny)]);

        let kept = requested.intersection(&granted);
        let text: Vec<String> = kept
            .entries()
            .map(|(pattern, decision)| format!("{pattern}={decision:?}"))
            .collect();
        assert_eq!(text, ["ads.npmjs.org=Deny", "**.npmjs.org=Allow"]);

        let merged = session.union(&kept);
        let decide = |host: &str| {
            merged
                .decide(&Destination::parse(host).unwrap_or_else(|e| panic!("{e}")))
                .map(|found| found.decision)
        };
        assert_eq!(decide("crates.io"), Some(allow));
        assert_eq!(decide("registry.npmjs.org"), Some(allow));
        assert_eq!(decide("ads.npmjs.org"), Some(deny));
        assert_eq!(decide("evil.example"), Some(deny));
        assert_eq!(decide("pypi.org"), None);
        assert_eq!(session.union(&session), session);
        assert!(DomainList::default().is_empty() && !merged.is_empty());
    }

    #[test]
    fn a_star_names_no_address() {
        let list = DomainList::new([
            ("*", ListDecision::Allow),
            ("paste.example", ListDecision::Deny),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let decide = |host: &str| {
            list.decide(&Destination::parse(host).unwrap_or_else(|e| panic!("{e}")))
                .map(|found| found.decision)
        };
        assert_eq!(decide("crates.io"), Some(ListDecision::Allow));
        assert_eq!(decide("paste.example"), Some(ListDecision::Deny));
        // The denied name's own address is not let through by `*`: it is
        // left undecided (a rule or a person decides).
        assert_eq!(decide("203.0.113.9"), None);
        assert_eq!(decide("[2001:db8::1]"), None);
    }
}
