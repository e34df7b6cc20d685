//! A destination's name to the addresses the proxy connects to: the name
//! that was decided on, and no other. The C library's resolver would try
//! the names its search list makes of it first (`db` asked,
//! `db.corp.example` reached) or after it fails (`nx.allowed.test` asked,
//! `nx.allowed.test.corp.example` reached): a probe reached a denied host,
//! and a loopback service behind an exact entry, so. The hosts file is
//! read here, as the resolver would; anything else is resolved as an
//! absolute name (a trailing dot), which no search list extends.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// Where the machine's own names are.
const HOSTS_FILE: &str = "/etc/hosts";

/// The addresses of `name` (canonical: no trailing dot) on `port`: the
/// hosts file's, where it names it, else what resolving the absolute name
/// gives. On a blocking thread, as the resolver's calls are.
pub(crate) async fn resolve(name: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || resolve_blocking(&name, port))
        .await
        .map_err(io::Error::other)?
}

fn resolve_blocking(name: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let listed = match std::fs::read(HOSTS_FILE) {
        Ok(bytes) => in_hosts_file(&bytes, name),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    if !listed.is_empty() {
        return Ok(listed
            .into_iter()
            .map(|address| SocketAddr::new(address, port))
            .collect());
    }
    Ok((format!("{name}."), port).to_socket_addrs()?.collect())
}

/// The addresses a hosts file's `bytes` give `name`, in its order: each
/// line an address, then its names, `#` to the line's end a comment;
/// names compared without case, as the resolver compares them. Bytes that
/// are not UTF-8 (a comment in Latin-1) name nothing, and the rest is read
/// as the resolver reads it.
fn in_hosts_file(bytes: &[u8], name: &str) -> Vec<IpAddr> {
    let text = String::from_utf8_lossy(bytes);
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(Ok(address)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let named = fields.any(|alias| {
            alias
                .strip_suffix('.')
                .unwrap_or(alias)
                .eq_ignore_ascii_case(name)
        });
        if named && !found.contains(&address) {
            found.push(address);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_file_names_what_it_lists_and_nothing_else() {
        // A review's: one byte that is not UTF-8 made every name
        // unreachable.
        let text = b"# caf\xe9 comment 10.0.0.1 db\n\
                    127.0.0.1\tlocalhost\n\
                    ::1 localhost ip6-localhost # ::2 localhost\n\
                    10.0.0.9 db.corp.example db-alias\n\
                    fe80::1%eth0 scoped\n\
                    not-an-address plain\n\
                    10.0.0.7 Mixed.Case. \n";
        let cases: [(&str, &[&str]); 7] = [
            ("localhost", &["127.0.0.1", "::1"]),
            ("ip6-localhost", &["::1"]),
            ("db-alias", &["10.0.0.9"]),
            ("mixed.case", &["10.0.0.7"]),
            // Not the search list's expansion, and not what a comment or
            // an unreadable line says.
            ("db", &[]),
            ("scoped", &[]),
            ("plain", &[]),
        ];
        for (name, expected) in cases {
            let expected: Vec<IpAddr> = expected.iter().map(|a| a.parse().unwrap()).collect();
            assert_eq!(in_hosts_file(text, name), expected, "{name}");
        }
    }
}
