//! Host names as sandboxed clients send them to the proxy. Nothing may
//! panic, and the canonical form must be a fixed point: what a destination
//! prints as reads back as the same destination, so a list entry and a
//! request cannot disagree about which host they name.

#![no_main]

use execgate_network_proxy::{Destination, DomainPattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(destination) = Destination::parse(text) {
        let printed = destination.to_string();
        assert_eq!(
            Destination::parse(&printed).as_ref(),
            Ok(&destination),
            "{text:?} printed as {printed:?}"
        );
    }
    if let Ok(pattern) = text.parse::<DomainPattern>() {
        let printed = pattern.to_string();
        assert_eq!(
            printed.parse::<DomainPattern>().as_ref(),
            Ok(&pattern),
            "{text:?}"
        );
    }
});
