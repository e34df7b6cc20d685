//! Which addresses are public, and how numeric host names read as IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a destination address is on the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    NonPublic(NonPublicRange),
}

/// The special-purpose range a non-public address belongs to, for the
/// message that refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NonPublicRange {
    Unspecified,
    Loopback,
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedAddressSpace,
    LinkLocal,
    /// 192.0.0.0/24 and 2001::/23: Teredo, benchmarking, relays and others.
    ProtocolAssignments,
    Documentation,
    Benchmarking,
    Multicast,
    /// Everything else no one may route: 240.0.0.0/4, IPv6 outside
    /// 2000::/3, the 6to4 relay anycast, SRv6 identifiers.
    Reserved,
    UniqueLocal,
    SiteLocal,
    Discard,
    /// `::a.b.c.d`, deprecated since 2006: refused whatever it embeds.
    Ipv4Compatible,
    /// 64:ff9b:1::/48, translation inside one network.
    LocalTranslation,
    /// A public address of one of this machine's own interfaces: whatever
    /// listens on every address (`0.0.0.0`, `::`) answers there, as on
    /// loopback.
    ThisMachine,
}

impl fmt::Display for NonPublicRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NonPublicRange::Unspecified => "an unspecified address (this machine itself)",
            NonPublicRange::Loopback => "a loopback address",
            NonPublicRange::Private => "a private address",
            NonPublicRange::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            NonPublicRange::LinkLocal => "a link-local address",
            NonPublicRange::ProtocolAssignments => "an address reserved for IETF protocols",
            NonPublicRange::Documentation => "a documentation address",
            NonPublicRange::Benchmarking => "a benchmarking address",
            NonPublicRange::Multicast => "a multicast address",
            NonPublicRange::Reserved => "a reserved address",
            NonPublicRange::UniqueLocal => "a unique local address",
            NonPublicRange::SiteLocal => "a site-local address",
            NonPublicRange::Discard => "a discard-only address",
            NonPublicRange::Ipv4Compatible => "an IPv4-compatible IPv6 address",
            NonPublicRange::LocalTranslation => "a local-use NAT64 address",
            NonPublicRange::ThisMachine => "this machine's own address",
        })
    }
}

/// [`classify`], and a public address that is one of this machine's own
/// is [`NonPublicRange::ThisMachine`]: what a connection made from here
/// reaches. Reads the interfaces' addresses at each call (they change);
/// one that cannot be read counts as none.
pub fn classify_from_here(address: IpAddr) -> AddressClass {
    match classify(address) {
        AddressClass::Public if is_own_address(address) => {
            AddressClass::NonPublic(NonPublicRange::ThisMachine)
        }
        class => class,
    }
}

#[cfg(target_os = "linux")]
fn is_own_address(address: IpAddr) -> bool {
    // A v4-mapped address reaches the IPv4 one it carries.
    let address = address.to_canonical();
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    interfaces
        .filter_map(|interface| interface.address)
        .any(|own| {
            let own = match (own.as_sockaddr_in(), own.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return false,
            };
            own.to_canonical() == address
        })
}

#[cfg(not(target_os = "linux"))]
fn is_own_address(_address: IpAddr) -> bool {
    false
}

/// Says whether `address` is public. An IPv6 address that carries an IPv4
/// one for translation (v4-mapped, NAT64 `64:ff9b::/96`, 6to4) is judged by
/// the IPv4 address it carries, since that is where a connection ends up.
pub fn classify(address: IpAddr) -> AddressClass {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(address: Ipv4Addr) -> AddressClass {
    use NonPublicRange::*;
    let bits = u32::from(address);
    // (network, prefix length, range): the IANA IPv4 special-purpose
    // registry, minus the entries that are globally reachable.
    const RANGES: &[(u32, u32, NonPublicRange)] = &[
        (0x0000_0000, 8, Unspecified),
        (0x0a00_0000, 8, Private),
        (0x6440_0000, 10, SharedAddressSpace),
        (0x7f00_0000, 8, Loopback),
        (0xa9fe_0000, 16, LinkLocal),
        (0xac10_0000, 12, Private),
        (0xc000_0000, 24, ProtocolAssignments),
        (0xc000_0200, 24, Documentation),
        (0xc058_6300, 24, Reserved),
        (0xc0a8_0000, 16, Private),
        (0xc612_0000, 15, Benchmarking),
        (0xc633_6400, 24, Documentation),
        (0xcb00_7100, 24, Documentation),
        (0xe000_0000, 4, Multicast),
        (0xf000_0000, 4, Reserved),
    ];
    for &(network, prefix, range) in RANGES {
        if bits >> (32 - prefix) == network >> (32 - prefix) {
            return AddressClass::NonPublic(range);
        }
    }
    AddressClass::Public
}

fn classify_v6(address: Ipv6Addr) -> AddressClass {
    use NonPublicRange::*;
    let bits = u128::from(address);
    let embedded_v4 = Ipv4Addr::from(bits as u32);
    if let Some(v4) = address.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if address.is_unspecified() {
        return AddressClass::NonPublic(Unspecified);
    }
    if address.is_loopback() {
        return AddressClass::NonPublic(Loopback);
    }
    let in_prefix =
        |network: u128, prefix: u32| bits >> (128 - prefix) == network >> (128 - prefix);
    if in_prefix(0, 96) {
        return AddressClass::NonPublic(Ipv4Compatible);
    }
    if in_prefix(0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return classify_v4(embedded_v4);
    }
    if in_prefix(0x2002 << 112, 16) {
        return classify_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    const RANGES: &[(u128, u32, NonPublicRange)] = &[
        (0x0064_ff9b_0001 << 80, 48, LocalTranslation),
        (0x0100 << 112, 64, Discard),
        (0x2001_0db8 << 96, 32, Documentation),
        (0x2001 << 112, 23, ProtocolAssignments),
        (0x3fff << 112, 20, Documentation),
        (0x5f00 << 112, 16, Reserved),
        (0xfc00 << 112, 7, UniqueLocal),
        (0xfe80 << 112, 10, LinkLocal),
        (0xfec0 << 112, 10, SiteLocal),
        (0xff00 << 112, 8, Multicast),
    ];
    for &(network, prefix, range) in RANGES {
        if in_prefix(network, prefix) {
            return AddressClass::NonPublic(range);
        }
    }
    // Global unicast is 2000::/3; nothing outside it is routed.
    if !in_prefix(0x2000 << 112, 3) {
        return AddressClass::NonPublic(Reserved);
    }
    AddressClass::Public
}

/// Whether the last label of a host name is numeric (decimal digits, or
/// `0x` and hex digits): such a name is an IPv4 address or nothing.
pub(crate) fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    if last.is_empty() {
        return false;
    }
    if last.bytes().all(|byte| byte.is_ascii_digit()) {
        return true;
    }
    matches!(last.get(..2), Some("0x" | "0X"))
        && last[2..].bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Reads `host` as `inet_aton` does: one to four parts separated by dots,
/// each decimal, octal (a leading `0`) or hex (`0x`), the last part filling
/// the bytes that remain (`127.1` is 127.0.0.1, `2852039166` is
/// 169.254.169.254). `None` when it is not such an address.
pub(crate) fn parse_ipv4_shorthand(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(parse_part(part)?);
    }
    let (last, leading) = values.split_last()?;
    let mut address: u64 = 0;
    for &value in leading {
        if value > 0xff {
            return None;
        }
        address = (address << 8) | value;
    }
    let room = 8 * (4 - leading.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    address = (address << room) | last;
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

fn parse_part(part: &str) -> Option<u64> {
    let (digits, radix) = match part.get(..2) {
        Some("0x" | "0X") => (&part[2..], 16),
        _ if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
        _ => (part, 10),
    };
    if digits.is_empty() {
        // `0x` alone is zero for inet_aton; an empty part is no number.
        return (radix == 16).then_some(0);
    }
    // At most 2^32 fits; longer digit strings overflow and are refused.
    if digits.len() > 32 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    /// A probe (108): the v4-mapped form of this machine's own address
    /// passed the check before connecting (and was refused only after, the
    /// service having seen a connection): an own address in any form is
    /// this machine's. Loopback is an address of this machine's too.
    #[cfg(target_os = "linux")]
    #[test]
    fn this_machines_addresses_in_every_form_are_its_own() {
        for address in ["127.0.0.1", "::ffff:127.0.0.1"] {
            let address: std::net::IpAddr = address.parse().unwrap();
            assert!(super::is_own_address(address), "{address}");
        }
        let elsewhere: std::net::IpAddr = "::ffff:192.0.2.77".parse().unwrap();
        assert!(!super::is_own_address(elsewhere));
    }

    use super::*;

    #[test]
    fn ipv4_shorthand_reads_as_inet_aton_does() {
        let cases: &[(&str, Option<[u8; 4]>)] = &[
            ("127.0.0.1", Some([127, 0, 0, 1])),
            ("127.1", Some([127, 0, 0, 1])),
            ("127.0.1", Some([127, 0, 0, 1])),
            ("2852039166", Some([169, 254, 169, 254])),
            ("0x7f000001", Some([127, 0, 0, 1])),
            ("0x7f.1", Some([127, 0, 0, 1])),
            ("0177.0.0.01", Some([127, 0, 0, 1])),
            ("017700000001", Some([127, 0, 0, 1])),
            ("0", Some([0, 0, 0, 0])),
            ("0x", Some([0, 0, 0, 0])),
            ("10.0x10.0.1", Some([10, 16, 0, 1])),
            ("4294967295", Some([255, 255, 255, 255])),
            ("4294967296", None),
            ("256.0.0.1", None),
            ("1.2.3.256", None),
            ("1.2.65536", None),
            ("1.2.3.4.5", None),
            ("08.0.0.1", None),
            ("0x1g", None),
            ("1..2", None),
            ("", None),
            ("99999999999999999999999999999999999999", None),
        ];
        let got: Vec<_> = cases
            .iter()
            .map(|(host, _)| (*host, parse_ipv4_shorthand(host).map(|a| a.octets())))
            .collect();
        let want: Vec<_> = cases
            .iter()
            .map(|(host, octets)| (*host, *octets))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn numeric_last_labels_are_recognised() {
        let cases = [
            ("example.com", false),
            ("1.2.3.4", true),
            ("foo.0x1f", true),
            ("foo.0x", true),
            ("foo.1a", false),
            ("0xg", false),
            ("123", true),
        ];
        for (host, numeric) in cases {
            assert_eq!(ends_in_number(host), numeric, "{host}");
        }
    }

    #[test]
    fn non_public_ranges_are_refused_in_both_families() {
        use NonPublicRange::*;
        let cases: &[(&str, AddressClass)] = &[
            ("0.0.0.0", AddressClass::NonPublic(Unspecified)),
            ("10.1.2.3", AddressClass::NonPublic(Private)),
            ("100.64.0.1", AddressClass::NonPublic(SharedAddressSpace)),
            ("100.128.0.1", AddressClass::Public),
            ("127.255.0.1", AddressClass::NonPublic(Loopback)),
            ("169.254.169.254", AddressClass::NonPublic(LinkLocal)),
            ("172.15.255.255", AddressClass::Public),
            ("172.16.0.1", AddressClass::NonPublic(Private)),
            ("172.31.255.255", AddressClass::NonPublic(Private)),
            ("172.32.0.0", AddressClass::Public),
            ("192.0.0.9", AddressClass::NonPublic(ProtocolAssignments)),
            ("192.0.2.1", AddressClass::NonPublic(Documentation)),
            ("192.88.99.1", AddressClass::NonPublic(Reserved)),
            ("192.168.1.1", AddressClass::NonPublic(Private)),
            ("198.18.0.1", AddressClass::NonPublic(Benchmarking)),
            ("198.19.255.255", AddressClass::NonPublic(Benchmarking)),
            ("198.20.0.0", AddressClass::Public),
            ("198.51.100.7", AddressClass::NonPublic(Documentation)),
            ("203.0.113.7", AddressClass::NonPublic(Documentation)),
            ("224.0.0.251", AddressClass::NonPublic(Multicast)),
            ("240.0.0.1", AddressClass::NonPublic(Reserved)),
            ("255.255.255.255", AddressClass::NonPublic(Reserved)),
            ("1.1.1.1", AddressClass::Public),
            ("8.8.8.8", AddressClass::Public),
            ("::", AddressClass::NonPublic(Unspecified)),
            ("::1", AddressClass::NonPublic(Loopback)),
            ("::ffff:127.0.0.1", AddressClass::NonPublic(Loopback)),
            ("::ffff:7f00:1", AddressClass::NonPublic(Loopback)),
            ("::ffff:169.254.169.254", AddressClass::NonPublic(LinkLocal)),
            ("::ffff:8.8.8.8", AddressClass::Public),
            ("::127.0.0.1", AddressClass::NonPublic(Ipv4Compatible)),
            ("::8.8.8.8", AddressClass::NonPublic(Ipv4Compatible)),
            ("64:ff9b::10.0.0.1", AddressClass::NonPublic(Private)),
            ("64:ff9b::8.8.8.8", AddressClass::Public),
            ("64:ff9b:1::1", AddressClass::NonPublic(LocalTranslation)),
            ("100::1", AddressClass::NonPublic(Discard)),
            ("2001::1", AddressClass::NonPublic(ProtocolAssignments)),
            ("2001:db8::1", AddressClass::NonPublic(Documentation)),
            ("2002:7f00:1::1", AddressClass::NonPublic(Loopback)),
            ("2002:0808:0808::1", AddressClass::Public),
            ("3fff::1", AddressClass::NonPublic(Documentation)),
            ("fc00::1", AddressClass::NonPublic(UniqueLocal)),
            ("fd12:3456::1", AddressClass::NonPublic(UniqueLocal)),
            ("fe80::1", AddressClass::NonPublic(LinkLocal)),
            ("febf::1", AddressClass::NonPublic(LinkLocal)),
            ("fec0::1", AddressClass::NonPublic(SiteLocal)),
            ("ff02::1", AddressClass::NonPublic(Multicast)),
            ("4000::1", AddressClass::NonPublic(Reserved)),
            ("2606:4700:4700::1111", AddressClass::Public),
            ("2a00:1450:4001::1", AddressClass::Public),
        ];
        let got: Vec<_> = cases
            .iter()
            .map(|(text, _)| {
                let address: IpAddr = text.parse().unwrap_or_else(|_| panic!("{text}"));
                (*text, classify(address))
            })
            .collect();
        let want: Vec<_> = cases.iter().map(|(text, class)| (*text, *class)).collect();
        assert_eq!(got, want);
    }
}
