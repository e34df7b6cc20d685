//! The network benchmark's client: a plain HTTP/1.1 client that either
//! talks to the origin directly or through an HTTP proxy (absolute-form
//! requests), so that the same code measures both paths. Run by
//! `scripts/bench --network`, on the host for the direct figures and inside
//! a `limited` sandbox for the proxied ones.
//!
//! `execgate-netbench-client download HOST:PORT PATH [PROXY]` prints the
//! bytes read and the seconds it took; `... latency HOST:PORT PATH
//! CONNECTIONS CONCURRENCY [PROXY]` prints, in microseconds, the 50th, 90th
//! and 99th percentile and the maximum of connect-to-first-byte times.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |index: usize| {
        args.get(index)
            .cloned()
            .ok_or_else(|| "usage: see the module doc".to_owned())
    };
    match arg(0)?.as_str() {
        "download" => {
            let (origin, path, proxy) = (arg(1)?, arg(2)?, args.get(3).cloned());
            let started = Instant::now();
            let mut stream = request(&origin, &path, proxy.as_deref())?;
            let mut buffer = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let read = stream.read(&mut buffer).map_err(|e| e.to_string())?;
                if read == 0 {
                    break;
                }
                total += read as u64;
            }
            println!("{total} {:.6}", started.elapsed().as_secs_f64());
        }
        "latency" => {
            let (origin, path) = (arg(1)?, arg(2)?);
            let connections: usize = arg(3)?.parse().map_err(|_| "bad CONNECTIONS")?;
            let concurrency: usize = arg(4)?.parse().map_err(|_| "bad CONCURRENCY")?;
            let proxy = args.get(5).cloned();
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (origin, path, proxy) = (origin.clone(), path.clone(), proxy.clone());
                    std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                        let mut times = Vec::new();
                        for _ in 0..connections / concurrency {
                            let started = Instant::now();
                            let mut stream = request(&origin, &path, proxy.as_deref())?;
                            let mut first = [0u8; 1];
                            stream.read_exact(&mut first).map_err(|e| e.to_string())?;
                            times.push(started.elapsed());
                            let mut rest = Vec::new();
                            let _ = stream.read_to_end(&mut rest);
                        }
                        Ok(times)
                    })
                })
                .collect();
            let mut times = Vec::new();
            for worker in workers {
                times.extend(worker.join().map_err(|_| "a worker panicked")??);
            }
            times.sort();
            let at = |p: f64| {
                let index = ((times.len() as f64 - 1.0) * p).round() as usize;
                times.get(index).map_or(0, Duration::as_micros)
            };
            println!("{} {} {} {}", at(0.5), at(0.9), at(0.99), at(1.0));
        }
        other => return Err(format!("unknown mode {other}")),
    }
    Ok(())
}

/// Connects (to `proxy` when given) and sends a GET for `path` on `origin`.
fn request(origin: &str, path: &str, proxy: Option<&str>) -> Result<TcpStream, String> {
    let (address, target) = match proxy {
        Some(proxy) => (proxy, format!("http://{origin}{path}")),
        None => (origin, path.to_owned()),
    };
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    Ok(stream)
}
