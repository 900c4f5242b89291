//! A generator of large, realistic fwlog logs for measuring `summary` (not a timed test):
//!
//! ```sh
//! FWLOG_BENCH_LOG=/tmp/fw-1g.jsonl FWLOG_BENCH_BYTES=1073741824 \
//!     cargo test -p fwlog --release -- --ignored generate_benchmark_log --nocapture
//! /usr/bin/time -v target/release/fwlog summary /tmp/fw-1g.jsonl > /dev/null
//! ```

use std::{
    fs::File,
    io::{BufWriter, Write as _},
};

/// xorshift64*: deterministic, dependency-free and fast enough to write 1 GB in seconds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PORTS: [u16; 12] = [22, 23, 80, 443, 445, 3389, 8080, 5900, 25, 53, 1433, 6379];
const HOSTS: [&str; 6] = [
    "example.com",
    "deb.debian.org",
    "github.com",
    "ntp.ubuntu.com",
    "",
    "",
];
const PROCESSES: [(&str, &str); 4] = [
    ("curl", "/usr/bin/curl"),
    ("apt", "/usr/bin/apt"),
    ("firefox", "/usr/lib/firefox/firefox"),
    ("systemd-resolve", "/usr/lib/systemd/systemd-resolved"),
];

/// Writes lines until the file reaches the size asked for: 70 % inbound drops from
/// `FWLOG_BENCH_SOURCES` (300 000) sources, 15 % outbound verdicts (with host names and processes), 15 % flows, a garbage line
/// in 10 000.
#[test]
#[ignore = "writes a large file; run by hand to measure summary"]
fn generate_benchmark_log() {
    let path = std::env::var("FWLOG_BENCH_LOG").unwrap_or_else(|_| "/tmp/fwlog-bench.jsonl".into());
    let target: u64 = std::env::var("FWLOG_BENCH_BYTES")
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(1 << 30);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).expect("create the log"));
    let sources: u64 = std::env::var("FWLOG_BENCH_SOURCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut written, mut lines) = (0u64, 0u64);
    let start = 1_795_590_550i64; // 2026-11-25T07:09:10Z
    let mut line = String::with_capacity(1024);
    while written < target {
        line.clear();
        let second = start + (lines / 200) as i64;
        let ts = jiff::Timestamp::from_second(second)
            .expect("in range")
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let micros = rng.below(1_000_000);
        let roll = rng.below(10_000);
        if roll == 0 {
            line.push_str("garbage that is not JSON\n");
        } else if roll < 7_000 {
            let source = rng.below(sources);
            let port = PORTS[rng.below(PORTS.len() as u64) as usize];
            line.push_str(&format!(
                r#"{{"timestamp":"{ts}.{micros:06}Z","event_type":"verdict","action":"drop","ct_state":"new","direction":"inbound","in_iface":"wlan0","chain":"LOG_AND_DROP","ip_version":4,"proto":"tcp","src_ip":"100.{}.{}.{}","src_port":{},"dest_ip":"192.0.2.10","dest_port":{port},"len":60,"tcp_flags":"S"}}"#,
                (source >> 16) & 255, (source >> 8) & 255, source & 255, 1024 + rng.below(60_000),
            ));
            line.push('\n');
        } else {
            let flow = roll >= 8_500;
            let host = HOSTS[rng.below(HOSTS.len() as u64) as usize];
            let (comm, exe) = PROCESSES[rng.below(PROCESSES.len() as u64) as usize];
            let dest = rng.below(5_000);
            line.push_str(&format!(
                r#"{{"timestamp":"{ts}.{micros:06}Z","event_type":"{}","action":"accept","ct_state":"new","direction":"outbound","ip_version":4,"proto":"tcp","src_ip":"192.0.2.10","src_port":{},"dest_ip":"198.51.{}.{}","dest_port":443,"len":60,"tcp_flags":"S","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg=""#,
                if flow { "flow" } else { "verdict" },
                1024 + rng.below(60_000),
                dest >> 8,
                dest & 255,
            ));
            if !host.is_empty() {
                line.push_str(&format!(r#","dest_host":"{host}""#));
            }
            line.push_str(&format!(
                r#","process":{{"pid":{},"comm":"{comm}","exe":"{exe}","uid":1000,"user":"alice"}}"#,
                100 + rng.below(30_000)
            ));
            if flow {
                line.push_str(&format!(
                    r#","flow":{{"start":"{ts}.000000Z","end":"{ts}.{micros:06}Z","duration_s":0.5,"pkts_toserver":{},"bytes_toserver":{},"pkts_toclient":{},"bytes_toclient":{},"reason":"fin"}}"#,
                    rng.below(100), rng.below(100_000), rng.below(100), rng.below(1_000_000)
                ));
            }
            line.push_str("}\n");
        }
        out.write_all(line.as_bytes()).expect("write the log");
        written += line.len() as u64;
        lines += 1;
    }
    out.flush().expect("write the log");
    println!("{path}: {written} bytes, {lines} lines");
}
