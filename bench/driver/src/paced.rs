//! Latency at a fixed request rate: an open-loop client paced per connection (like wrk2), written
//! here because wrk cannot pace and oha cannot rotate a header through thousands of tokens.
//!
//! Each of `connections` keep-alive connections sends every `connections / rate` seconds, staggered.
//! A request's latency runs from its send to the end of its answer; when the previous answer on
//! the connection came back after this request was due, it runs from when it was due instead
//! (coordinated-omission correction: a slow proxy is charged for the requests it delayed, while
//! the client's own timer jitter is not charged to anyone).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct Run {
    pub sent: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
    /// Sorted, in microseconds.
    pub latencies_us: Vec<u32>,
    pub seconds: f64,
}

impl Run {
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p)
    }
    pub fn achieved_rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.latencies_us.len() as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The `p`-th percentile (0-100) of sorted values, nearest rank.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Sends `requests` in turn (from index `offset`) at `rate` per second for `duration`.
pub fn run(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    offset: u64,
    rate: f64,
    connections: u32,
    duration: Duration,
) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("paced runtime");
    rt.block_on(async move {
        let next = Arc::new(AtomicU64::new(offset));
        let start = Instant::now() + Duration::from_millis(50);
        let interval = Duration::from_secs_f64(f64::from(connections) / rate);
        let mut tasks = Vec::new();
        for c in 0..connections {
            let first = start + Duration::from_secs_f64(f64::from(c) / rate);
            let end = start + duration;
            let requests = Arc::clone(&requests);
            let next = Arc::clone(&next);
            tasks.push(tokio::spawn(async move {
                connection(addr, requests, next, first, interval, end).await
            }));
        }
        let mut total = Run::default();
        for t in tasks {
            if let Ok(r) = t.await {
                total.sent += r.sent;
                total.errors += r.errors;
                for (s, n) in r.statuses {
                    *total.statuses.entry(s).or_default() += n;
                }
                total.latencies_us.extend(r.latencies_us);
            }
        }
        total.latencies_us.sort_unstable();
        total.seconds = duration.as_secs_f64();
        total
    })
}

async fn connection(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicU64>,
    first: Instant,
    interval: Duration,
    end: Instant,
) -> Run {
    let mut out = Run::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut due = first;
    let mut prev_done = first;
    while due < end {
        tokio::time::sleep_until(due).await;
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    out.errors += 1;
                    due += interval;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else {
            due += interval;
            continue;
        };
        let i = next.fetch_add(1, Ordering::Relaxed) as usize % requests.len();
        let sent_at = Instant::now();
        let start = if prev_done > due { due } else { sent_at };
        out.sent += 1;
        let answer = match s.write_all(&requests[i]).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e.to_string()),
        };
        let done = Instant::now();
        prev_done = done;
        match answer {
            Ok((status, keep_alive)) => {
                *out.statuses.entry(status).or_default() += 1;
                let us = done.duration_since(start).as_micros();
                out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                if !keep_alive {
                    stream = None;
                }
            }
            Err(_) => {
                out.errors += 1;
                stream = None;
            }
        }
        due += interval;
    }
    out
}

/// Reads one HTTP/1.1 response: status and whether the connection stays open.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, bool), String> {
    buf.clear();
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        read_more(s, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| e.to_string())?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = true;
    for line in head.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.contains("chunked"),
            "connection" => keep_alive = !v.contains("close"),
            _ => {}
        }
    }
    if chunked {
        // Until the terminating zero-length chunk; the bench's answers are small.
        while find(&buf[head_end..], b"0\r\n\r\n").is_none() {
            read_more(s, buf).await?;
        }
    } else {
        let want = head_end + length.unwrap_or(0);
        while buf.len() < want {
            read_more(s, buf).await?;
        }
    }
    Ok((status, keep_alive))
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
