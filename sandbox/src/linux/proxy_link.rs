//! The sandbox's side of a limited network: a listening socket on the
//! sandbox's own loopback, handed to execgate's proxy outside, and the
//! proxy variables that point ordinary tools at it.
//!
//! The listener is created inside the view's network namespace, so only
//! the sandbox can connect to it; the proxy, which received it, accepts
//! those connections in its own process. The helper keeps no copy: after
//! the hand-over, nothing in the sandbox holds the link or the listener.

use std::ffi::{OsStr, OsString};
use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use super::sys;

/// The one message on the link: this tag, with the listener and a pidfd of
/// the helper (which becomes the command, or its supervisor) attached.
pub const LISTENER_MESSAGE: &[u8] = b"EXGT-PROXY-LISTENER";

/// Marks an environment whose proxy variables execgate set: a later sandbox
/// replaces them (its own proxy) or removes them (no proxy), so that no
/// program is sent to an address that means something else where it runs.
pub const PROXY_MARKER: &str = "EXECGATE_PROXY";

/// The variables set to the proxy's address, as URL (`http://`), as SOCKS
/// URL, or as the list of hosts reached directly.
const HTTP_PROXY_VARIABLES: [&str; 10] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "npm_config_proxy",
    "npm_config_https_proxy",
    "YARN_HTTP_PROXY",
    "YARN_HTTPS_PROXY",
    "PIP_PROXY",
    "CARGO_HTTP_PROXY",
];
const SOCKS_PROXY_VARIABLES: [&str; 2] = ["ALL_PROXY", "all_proxy"];
const NO_PROXY_VARIABLES: [&str; 3] = ["NO_PROXY", "no_proxy", "npm_config_noproxy"];
/// Whether `name` is one a sandbox's link to the proxy sets: a proxy
/// variable, or the marker.
pub fn is_proxy_variable(name: &OsStr) -> bool {
    name == PROXY_MARKER
        || HTTP_PROXY_VARIABLES
            .iter()
            .chain(&SOCKS_PROXY_VARIABLES)
            .chain(&NO_PROXY_VARIABLES)
            .any(|variable| name == *variable)
}

/// Loopback stays the sandbox's own: reached directly, not through the
/// proxy (which would refuse it).
const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// Listens on the sandbox's loopback, sends the listener (and this
/// process's pidfd, by which the proxy knows when the sandbox ended) over
/// `link` and closes them all. Returns the address the proxy variables name.
pub(crate) fn hand_over_listener(link: RawFd) -> Result<String, String> {
    let link = sys::take_inherited(link)
        .map_err(|errno| format!("the link to execgate's proxy is not open: {errno}"))?;
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|error| format!("cannot listen on the sandbox's loopback: {error}"))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("cannot read the proxy's address: {error}"))?;
    let pidfd = sys::own_pidfd()
        .map_err(|errno| format!("cannot open a pidfd for the sandbox: {errno}"))?;
    let fds = [listener.as_raw_fd(), pidfd.as_raw_fd()];
    sendmsg::<UnixAddr>(
        link.as_raw_fd(),
        &[IoSlice::new(LISTENER_MESSAGE)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|errno| format!("cannot hand the listener to execgate's proxy: {errno}"))?;
    Ok(address.to_string())
}

/// `inherited` with execgate's proxy variables removed (when an earlier
/// sandbox set them) and, with a `proxy` address, set to it.
pub(crate) fn environment(
    inherited: impl Iterator<Item = (OsString, OsString)>,
    proxy: Option<&str>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = inherited.collect();
    let marked = env.iter().any(|(name, _)| name == PROXY_MARKER);
    if marked || proxy.is_some() {
        env.retain(|(name, _)| !is_proxy_variable(name));
    }
    if let Some(address) = proxy {
        let http = format!("http://{address}");
        let socks = format!("socks5h://{address}");
        let set = HTTP_PROXY_VARIABLES
            .iter()
            .map(|name| (*name, http.as_str()))
            .chain(
                SOCKS_PROXY_VARIABLES
                    .iter()
                    .map(|name| (*name, socks.as_str())),
            )
            .chain(NO_PROXY_VARIABLES.iter().map(|name| (*name, NO_PROXY)))
            .chain([(PROXY_MARKER, http.as_str())]);
        env.extend(set.map(|(name, value)| (name.into(), value.into())));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect()
    }

    fn value<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a str> {
        env.iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.to_str())
    }

    #[test]
    fn proxy_variables_are_set_replaced_and_removed() {
        let user = vars(&[("HTTP_PROXY", "http://corp:3128"), ("HOME", "/h")]);
        // Without execgate's marker, the user's variables stay.
        assert_eq!(environment(user.clone().into_iter(), None), user);

        let limited = environment(user.into_iter(), Some("127.0.0.1:4000"));
        assert_eq!(value(&limited, "HTTP_PROXY"), Some("http://127.0.0.1:4000"));
        assert_eq!(
            value(&limited, "https_proxy"),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(value(&limited, "PIP_PROXY"), Some("http://127.0.0.1:4000"));
        assert_eq!(
            value(&limited, "ALL_PROXY"),
            Some("socks5h://127.0.0.1:4000")
        );
        assert_eq!(value(&limited, "no_proxy"), Some("localhost,127.0.0.1,::1"));
        assert_eq!(value(&limited, "HOME"), Some("/h"));
        assert_eq!(
            limited
                .iter()
                .filter(|(name, _)| name == "HTTP_PROXY")
                .count(),
            1
        );

        // A nested sandbox gets its own proxy, or none.
        let nested = environment(limited.clone().into_iter(), Some("127.0.0.1:5000"));
        assert_eq!(value(&nested, "HTTPS_PROXY"), Some("http://127.0.0.1:5000"));
        let unproxied = environment(limited.into_iter(), None);
        assert_eq!(unproxied, vars(&[("HOME", "/h")]));
    }
}
