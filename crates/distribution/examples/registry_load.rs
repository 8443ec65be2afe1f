//! A load generator for a registry's blob endpoints, for benches/registry-server.sh.
//!
//! ```text
//! registry_load push --url http://127.0.0.1:5000 --clients 16 --blobs 1 --size 50MB \
//!                    [--repo bench/load] [--seed N] [--digests-out FILE]
//! registry_load pull --url http://127.0.0.1:5000 --digests FILE --clients 16 \
//!                    [--repo bench/load] [--repeat R | --duration SECONDS] [--verify]
//! ```
//!
//! - push: every client thread uploads its `--blobs` blobs of `--size` bytes, one after the
//!   other, each as `POST /v2/<repo>/blobs/uploads/` (202 and a Location) then
//!   `PUT <Location>?digest=<digest>` with the whole blob as the body (201). The blobs are
//!   generated (distinct pseudo-random bytes from `--seed`, the client and the blob's index,
//!   so no two are alike) and hashed before the clock starts. One operation is the POST and
//!   the PUT of one blob.
//! - pull: the blobs listed in `--digests` (lines `sha256:<hex> <size>`, as `push
//!   --digests-out` writes them) are dealt out to the clients in turn; every client GETs its
//!   blobs `--repeat` times over (or again and again until `--duration` seconds have passed),
//!   reading each whole body and checking its length (and with `--verify`, its digest). One
//!   operation is one GET.
//!
//! Every client has its own HTTP/1.1 connection, opened (by a GET /v2/) before the clock
//! starts; all start together. Any failed request (transport error, unexpected status, short
//! body, wrong digest) fails the run: the message goes to stderr and the exit status is 1.
//! Otherwise one JSON line goes to stdout: the total bytes, the wall time, the throughput in
//! MB/s (10^6 bytes a second) and the operations' latency (p50, p90, p99, max, mean, in
//! seconds; percentiles by nearest rank).

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use berth_reference::Digest;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::blocking::Client;

const USAGE: &str = "\
usage: registry_load push --url URL [--repo NAME] [--clients N] [--blobs M] [--size BYTES]
                          [--seed N] [--digests-out FILE] [--timeout SECONDS]
       registry_load pull --url URL --digests FILE [--repo NAME] [--clients N]
                          [--repeat R | --duration SECONDS] [--verify] [--timeout SECONDS]
BYTES takes a suffix: k, M, G (10^3, 10^6, 10^9) or KiB, MiB, GiB (2^10, 2^20, 2^30).
Defaults: --repo bench/load --clients 16 --blobs 1 --size 50MB --seed 1 --repeat 1 --timeout 600";

#[derive(Debug)]
struct Options {
    mode: Mode,
    url: String,
    repo: String,
    clients: usize,
    blobs: usize,
    size: usize,
    seed: u64,
    digests_out: Option<String>,
    digests: Option<String>,
    repeat: usize,
    duration: Option<Duration>,
    verify: bool,
    timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Push,
    Pull,
}

fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        u => return Err(format!("unknown unit {u:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("too large: {s:?}"))
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("push") => Mode::Push,
        Some("pull") => Mode::Pull,
        Some("-h" | "--help") => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        Some(other) => return Err(format!("unknown mode {other:?}")),
        None => return Err("a mode is needed: push or pull".into()),
    };
    let mut o = Options {
        mode,
        url: String::new(),
        repo: "bench/load".into(),
        clients: 16,
        blobs: 1,
        size: 50_000_000,
        seed: 1,
        digests_out: None,
        digests: None,
        repeat: 1,
        duration: None,
        verify: false,
        timeout: Duration::from_secs(600),
    };
    while let Some(flag) = args.next() {
        if flag == "--verify" {
            o.verify = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--url" => o.url = value.trim_end_matches('/').to_owned(),
            "--repo" => o.repo = value,
            "--clients" => o.clients = number(&value)?,
            "--blobs" => o.blobs = number(&value)?,
            "--size" => o.size = parse_bytes(&value)?,
            "--seed" => o.seed = number(&value)? as u64,
            "--digests-out" => o.digests_out = Some(value),
            "--digests" => o.digests = Some(value),
            "--repeat" => o.repeat = number(&value)?,
            "--duration" => {
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--duration: not a number: {value:?}"))?;
                o.duration = Some(Duration::from_secs_f64(secs));
            }
            "--timeout" => o.timeout = Duration::from_secs(number(&value)? as u64),
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    if o.url.is_empty() {
        return Err("--url is needed".into());
    }
    if o.clients == 0 || o.blobs == 0 || o.repeat == 0 {
        return Err("--clients, --blobs and --repeat must be at least 1".into());
    }
    if o.mode == Mode::Pull && o.digests.is_none() {
        return Err("pull needs --digests FILE".into());
    }
    Ok(o)
}

/// splitmix64: fast, and distinct seeds give distinct streams.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bytes of blob `index`: pseudo-random, distinct for every (seed, index).
fn make_blob(seed: u64, index: u64, size: usize) -> (Bytes, Digest) {
    let mut state = seed
        .wrapping_mul(0x1000_0000_01b3)
        .wrapping_add(index.wrapping_mul(0x9e37_79b9));
    // Mix the seed and index into the state so that neighbouring streams do not overlap.
    let mut mix = state ^ 0x5851_f42d_4c95_7f2d;
    state = splitmix(&mut mix);
    let mut data = vec![0u8; size];
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = splitmix(&mut state).to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&last[..n]);
    let digest = Digest::sha256_of(&data);
    (Bytes::from(data), digest)
}

/// The blobs of every client, generated and hashed on all CPUs.
fn make_blobs(o: &Options) -> Vec<Vec<(Bytes, Digest)>> {
    let total = o.clients * o.blobs;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(total);
    let mut all: Vec<Option<(Bytes, Digest)>> = vec![None; total];
    std::thread::scope(|s| {
        let per = total.div_ceil(workers);
        for (w, slot) in all.chunks_mut(per).enumerate() {
            let (seed, size) = (o.seed, o.size);
            s.spawn(move || {
                for (i, b) in slot.iter_mut().enumerate() {
                    *b = Some(make_blob(seed, (w * per + i) as u64, size));
                }
            });
        }
    });
    let mut all = all.into_iter().map(|b| b.expect("every blob generated"));
    (0..o.clients)
        .map(|_| all.by_ref().take(o.blobs).collect())
        .collect()
}

fn client(o: &Options) -> Result<Client, String> {
    Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(o.timeout)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// GET /v2/: opens the client's connection before the clock starts.
fn ping(client: &Client, url: &str) -> Result<(), String> {
    let r = client
        .get(format!("{url}/v2/"))
        .send()
        .map_err(|e| format!("GET {url}/v2/: {e}"))?;
    if r.status() != StatusCode::OK {
        return Err(format!("GET {url}/v2/: status {}", r.status()));
    }
    r.bytes().map_err(|e| format!("GET {url}/v2/: {e}"))?;
    Ok(())
}

fn push_one(client: &Client, o: &Options, blob: &Bytes, digest: &Digest) -> Result<(), String> {
    let start = format!("{}/v2/{}/blobs/uploads/", o.url, o.repo);
    let r = client
        .post(&start)
        .header("Content-Length", "0")
        .send()
        .map_err(|e| format!("POST {start}: {e}"))?;
    if r.status() != StatusCode::ACCEPTED {
        return Err(format!("POST {start}: status {}", r.status()));
    }
    let location = r
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("POST {start}: no Location header"))?
        .to_owned();
    r.bytes().map_err(|e| format!("POST {start}: {e}"))?;
    let mut put = if location.starts_with("http://") || location.starts_with("https://") {
        location
    } else if location.starts_with('/') {
        format!("{}{location}", o.url)
    } else {
        return Err(format!("POST {start}: unexpected Location {location:?}"));
    };
    put.push(if put.contains('?') { '&' } else { '?' });
    put.push_str("digest=");
    put.push_str(&digest.as_str().replace(':', "%3A"));
    let r = client
        .put(&put)
        .header("Content-Type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .map_err(|e| format!("PUT {put}: {e}"))?;
    let status = r.status();
    let answered = r
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = r.text().unwrap_or_default();
    if status != StatusCode::CREATED {
        return Err(format!("PUT {put}: status {status}: {body}"));
    }
    if let Some(d) = answered
        && d != digest.as_str()
    {
        return Err(format!("PUT {put}: the registry answered digest {d}"));
    }
    Ok(())
}

fn pull_one(
    client: &Client,
    o: &Options,
    digest: &str,
    size: u64,
    buf: &mut [u8],
) -> Result<u64, String> {
    let url = format!("{}/v2/{}/blobs/{digest}", o.url, o.repo);
    let mut r = client
        .get(&url)
        .send()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if r.status() != StatusCode::OK {
        return Err(format!("GET {url}: status {}", r.status()));
    }
    let mut hasher = o.verify.then(berth_reference::Sha256Digester::new);
    let mut got: u64 = 0;
    loop {
        let n = r.read(buf).map_err(|e| format!("GET {url}: {e}"))?;
        if n == 0 {
            break;
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        got += n as u64;
    }
    if got != size {
        return Err(format!("GET {url}: {got} bytes, expected {size}"));
    }
    if let Some(h) = hasher {
        let d = h.finish();
        if d.as_str() != digest {
            return Err(format!("GET {url}: the body's digest is {d}"));
        }
    }
    Ok(got)
}

/// What one client thread did: its operations' latencies and the bytes it moved.
struct ClientResult {
    latencies: Vec<f64>,
    bytes: u64,
}

fn read_digests(path: &str) -> Result<Vec<(String, u64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(d), Some(s)) = (f.next(), f.next()) else {
            return Err(format!("{path}: bad line {line:?}"));
        };
        Digest::parse(d).map_err(|e| format!("{path}: {d}: {e}"))?;
        let s: u64 = s
            .parse()
            .map_err(|_| format!("{path}: bad size in {line:?}"))?;
        out.push((d.to_owned(), s));
    }
    if out.is_empty() {
        return Err(format!("{path}: no blobs listed"));
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run(o: &Options) -> Result<serde_json::Value, String> {
    let clients = (0..o.clients)
        .map(|_| client(o))
        .collect::<Result<Vec<_>, _>>()?;
    let failed = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(o.clients + 1));

    // The work of each client, prepared before the clock starts.
    enum Work {
        Push(Vec<(Bytes, Digest)>),
        Pull(Vec<(String, u64)>),
    }
    let mut pushed: Vec<(String, u64)> = Vec::new();
    let works: Vec<Work> = match o.mode {
        Mode::Push => {
            let blobs = make_blobs(o);
            for b in blobs.iter().flatten() {
                pushed.push((b.1.as_str().to_owned(), b.0.len() as u64));
            }
            blobs.into_iter().map(Work::Push).collect()
        }
        Mode::Pull => {
            let digests = read_digests(o.digests.as_deref().expect("checked"))?;
            let mut per: Vec<Vec<(String, u64)>> = vec![Vec::new(); o.clients];
            for (i, d) in digests.into_iter().enumerate() {
                per[i % o.clients].push(d);
            }
            if per.iter().any(Vec::is_empty) {
                return Err(format!(
                    "{} lists fewer blobs than there are clients ({})",
                    o.digests.as_deref().unwrap_or(""),
                    o.clients
                ));
            }
            per.into_iter().map(Work::Pull).collect()
        }
    };

    let (wall, results) = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (client, work) in clients.into_iter().zip(works) {
            let (barrier, failed) = (barrier.clone(), failed.clone());
            handles.push(s.spawn(move || -> Result<ClientResult, String> {
                let ready = ping(&client, &o.url);
                barrier.wait();
                ready?;
                let mut res = ClientResult {
                    latencies: Vec::new(),
                    bytes: 0,
                };
                let t0 = Instant::now();
                let fail = |e: String| {
                    failed.store(true, Ordering::Relaxed);
                    e
                };
                match work {
                    Work::Push(blobs) => {
                        for (blob, digest) in &blobs {
                            if failed.load(Ordering::Relaxed) {
                                break;
                            }
                            let t = Instant::now();
                            push_one(&client, o, blob, digest).map_err(fail)?;
                            res.latencies.push(t.elapsed().as_secs_f64());
                            res.bytes += blob.len() as u64;
                        }
                    }
                    Work::Pull(blobs) => {
                        let mut buf = vec![0u8; 256 << 10];
                        let mut pass = 0;
                        'passes: loop {
                            for (digest, size) in &blobs {
                                if failed.load(Ordering::Relaxed) {
                                    break 'passes;
                                }
                                let t = Instant::now();
                                res.bytes +=
                                    pull_one(&client, o, digest, *size, &mut buf).map_err(fail)?;
                                res.latencies.push(t.elapsed().as_secs_f64());
                                if o.duration.is_some_and(|d| t0.elapsed() >= d) {
                                    break 'passes;
                                }
                            }
                            pass += 1;
                            if o.duration.is_none() && pass >= o.repeat {
                                break;
                            }
                        }
                    }
                }
                Ok(res)
            }));
        }
        barrier.wait();
        let t0 = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a client thread panicked".into()))
            })
            .collect();
        (t0.elapsed().as_secs_f64(), results)
    });
    let mut latencies = Vec::new();
    let mut bytes = 0u64;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(r) => {
                latencies.extend(r.latencies);
                bytes += r.bytes;
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    if let Some(path) = &o.digests_out {
        let mut f = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
        for (d, s) in &pushed {
            writeln!(f, "{d} {s}").map_err(|e| format!("{path}: {e}"))?;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let round = |x: f64| (x * 1e6).round() / 1e6;
    Ok(serde_json::json!({
        "mode": match o.mode { Mode::Push => "push", Mode::Pull => "pull" },
        "url": o.url,
        "clients": o.clients,
        "ops": latencies.len(),
        "bytes": bytes,
        "seconds": round(wall),
        "mb_per_s": round(bytes as f64 / 1e6 / wall),
        "latency_s": {
            "p50": round(percentile(&latencies, 0.50)),
            "p90": round(percentile(&latencies, 0.90)),
            "p99": round(percentile(&latencies, 0.99)),
            "max": round(latencies.last().copied().unwrap_or(0.0)),
            "mean": round(mean),
        },
    }))
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("registry_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("registry_load: {e}");
            ExitCode::FAILURE
        }
    }
}
