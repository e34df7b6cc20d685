//! Whatever a sandboxed client sends the proxy (HTTP heads, CONNECT, SOCKS5
//! greetings and requests), read through the real front end with a decider
//! that denies everything, so no connection is ever made. Nothing may
//! panic, and no connection may be relayed.

#![no_main]

use std::future::Future;
use std::pin::Pin;

use execgate_network_proxy::{
    serve_connection, ConnectRequest, ConnectionOutcome, Decider, Verdict,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct DenyAll;

impl Decider for DenyAll {
    fn decide<'a>(
        &'a self,
        _request: &'a ConnectRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async {
            Verdict::Deny {
                reason: "fuzzing".into(),
            }
        })
    }

    fn refuses_address(&self, _: &ConnectRequest, _: std::net::IpAddr) -> Option<String> {
        None
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(input.len() + 1024);
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let drain = async move {
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
        };
        let (report, ()) = tokio::join!(serve_connection(server, &DenyAll), drain);
        assert!(
            !matches!(report.outcome, ConnectionOutcome::Relayed { .. }),
            "{report:?}"
        );
    });
});
