//! Host names under hostile DNS traffic from the peer (scapy): an answer names addresses only
//! when it answers a question the host asked (its id, its name, from the resolver and port the
//! question went to) and the firewall let it in. Names and process names full of terminal
//! controls come out escaped in the text format and in `fwlog summary`; a summary of a corrupt
//! input goes on with the others and says so in its exit status.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    fwlog_bin,
    netns::{HOST_V4, PEER_V4},
    scapy,
    traffic::{tcp_listen, udp_bind},
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use simple_dns::{rdata, Name, Packet, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

/// The address forged answers name: on the test's subnet, so a knock from it passes the
/// host's reverse-path check.
const FORGED: &str = "10.200.0.9";
const REAL: &str = "10.200.0.10";
const HOST_PORT: u16 = 40053;

/// A DNS question for `name` (type A), as the host's resolver sends it.
fn question(id: u16, name: &str) -> Result<Vec<u8>> {
    let mut query = Packet::new_query(id);
    query.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    Ok(query.build_bytes_vec()?)
}

/// scapy: one DNS answer from `src:sport` to the host's resolver port, naming `address`.
fn forged_answer(src: &str, sport: u16, id: u16, name: &str, address: &str) -> String {
    format!(
        "Ether(dst=MAC)/IP(src={src:?}, dst={HOST_V4:?})/UDP(sport={sport}, dport={HOST_PORT})/\
         DNS(id={id}, qr=1, qd=DNSQR(qname={name:?}), an=DNSRR(rrname={name:?}, type='A', ttl=300, rdata={address:?}))"
    )
}

/// Sends the scapy frames (Python expressions, `MAC` is the host's) from the peer, in order.
fn send(net: &TestNet, frames: &[String]) -> Result<()> {
    send_after(net, frames, || Ok(()))
}

/// [`send`], with `before` run once scapy is loaded and the frames built, just before they go:
/// an answer must follow its question within seconds, and loading scapy takes longer than
/// that under emulation (the kernel matrix).
fn send_after(net: &TestNet, frames: &[String], before: impl FnOnce() -> Result<()>) -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mac = scapy::mac_of(&net.host, &net.host_if)?;
    let program = format!(
        "import sys\nfrom scapy.all import *\nconf.verb = 0\nMAC = {mac:?}\n\
         frames = [{}]\nprint('ready', flush=True)\nsys.stdin.readline()\n\
         sendp(frames, iface={:?})\n",
        frames.join(", "),
        net.peer_if
    );
    let mut child = net
        .peer
        .command(scapy::python()?)
        .args(["-c", &program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting scapy")?;
    let mut stdin = child.stdin.take().context("scapy's stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("scapy's stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let sent = if line.trim() == "ready" {
        before().and_then(|()| Ok(stdin.write_all(b"go\n")?))
    } else {
        Err(anyhow::anyhow!("scapy did not start: {line:?}"))
    };
    drop(stdin);
    let status = child.wait()?;
    sent?;
    anyhow::ensure!(
        status.success(),
        "the scapy script failed ({status}):\n{program}"
    );
    Ok(())
}

/// A SYN to the host's port 22 from `src` (spoofed by the peer); returns fwlog's verdict on it.
fn knock_from(net: &TestNet, fwlog: &mut Fwlog, src: &str) -> Result<Value> {
    send(
        net,
        &[format!(
            "Ether(dst=MAC)/IP(src={src:?}, dst={HOST_V4:?})/TCP(sport=41000, dport=22, flags='S')"
        )],
    )?;
    fwlog.expect_event(&format!("the knock from {src}"), |e| {
        e["event_type"] == "verdict" && e["src_ip"] == src && e["dest_port"] == 22
    })
}

#[test]
fn an_unsolicited_answer_names_nothing() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    send(
        &net,
        &[forged_answer(
            PEER_V4,
            53,
            4242,
            "updates.microsoft.com",
            FORGED,
        )],
    )?;
    let answer = fwlog.expect_event("the unsolicited answer, refused", |e| {
        e["event_type"] == "verdict" && e["src_port"] == 53 && e["dest_port"] == HOST_PORT
    })?;
    assert_eq!(answer["action"], "drop");
    let knock = knock_from(&net, &mut fwlog, FORGED)?;
    assert!(
        knock.get("src_host").is_none(),
        "named by a forged answer: {knock}"
    );
    Ok(())
}

#[test]
fn only_the_answer_to_the_hosts_own_question_names() -> Result<()> {
    let net = TestNet::new()?;
    // A resolver that hears the question and says nothing (no port-unreachable either): the
    // peer's scapy plays every answer.
    let _resolver = udp_bind(&net.peer, addr(PEER_V4, 53))?;
    let client = udp_bind(&net.host, addr(HOST_V4, HOST_PORT))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    send_after(
        &net,
        &[
            forged_answer(PEER_V4, 53, 78, "intranet.test", FORGED), // another id
            forged_answer(PEER_V4, 53, 77, "other.test", FORGED),    // another name
            forged_answer(PEER_V4, 5353, 77, "intranet.test", FORGED), // another port
            forged_answer("10.200.0.3", 53, 77, "intranet.test", FORGED), // another resolver
            forged_answer(PEER_V4, 53, 77, "intranet.test", REAL),   // the answer
            forged_answer(PEER_V4, 53, 77, "intranet.test", FORGED), // answered already
        ],
        || {
            Ok(client
                .send_to(&question(77, "intranet.test")?, addr(PEER_V4, 53))
                .map(drop)?)
        },
    )?;
    let knock = knock_from(&net, &mut fwlog, FORGED)?;
    assert!(
        knock.get("src_host").is_none(),
        "named by a forged answer: {knock}"
    );
    let knock = knock_from(&net, &mut fwlog, REAL)?;
    assert_eq!(knock["src_host"], "intranet.test", "{knock}");
    Ok(())
}

#[test]
fn an_answer_the_firewall_drops_names_nothing() -> Result<()> {
    let net = TestNet::new()?;
    let _resolver = udp_bind(&net.peer, addr(PEER_V4, 53))?;
    let client = udp_bind(&net.host, addr(HOST_V4, HOST_PORT))?;
    // Questions leave untracked, so their answers are new inbound datagrams, which the
    // default policy drops: the answer matches the question and is still refused.
    net.host.output(
        "iptables",
        &[
            "-t",
            "raw",
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "--dport",
            "53",
            "-j",
            "CT",
            "--notrack",
        ],
    )?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    send_after(
        &net,
        &[forged_answer(PEER_V4, 53, 91, "intranet.test", REAL)],
        || {
            Ok(client
                .send_to(&question(91, "intranet.test")?, addr(PEER_V4, 53))
                .map(drop)?)
        },
    )?;
    let answer = fwlog.expect_event("the answer, refused", |e| {
        e["event_type"] == "verdict" && e["src_port"] == 53 && e["dest_port"] == HOST_PORT
    })?;
    assert_eq!(answer["action"], "drop");
    let knock = knock_from(&net, &mut fwlog, REAL)?;
    assert!(
        knock.get("src_host").is_none(),
        "named by a dropped answer: {knock}"
    );
    Ok(())
}

/// A terminal title, a screen clear, a forged line, a C1 CSI and a bidi override.
const HOSTILE_NAME: &str = "x\x1b]0;owned\x07\x1b[2J\n07:00:00.000 accept\u{9b}31m\u{202e}.test";
/// A thread name (15 bytes at most) with a colour change and a newline.
const HOSTILE_COMM: &str = "ev\x1b[31m\nil";

/// The host looks up [`HOSTILE_NAME`] (the peer's resolver answers with its own address),
/// then a thread named [`HOSTILE_COMM`] connects to the peer's port 8080.
fn hostile_lookup_and_connect(net: &TestNet) -> Result<()> {
    let resolver = udp_bind(&net.peer, addr(PEER_V4, 53))?;
    let server = std::thread::spawn(move || -> Result<()> {
        resolver.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buffer = [0u8; 512];
        let (n, client) = resolver.recv_from(&mut buffer)?;
        let query = Packet::parse(&buffer[..n])?;
        let asked = query.questions.first().context("a question")?.clone();
        let mut reply = Packet::new_reply(query.id());
        reply.answers.push(ResourceRecord::new(
            asked.qname.clone(),
            CLASS::IN,
            300,
            rdata::RData::A(rdata::A {
                address: u32::from(PEER_V4.parse::<std::net::Ipv4Addr>()?),
            }),
        ));
        reply.questions.push(asked);
        resolver.send_to(&reply.build_bytes_vec()?, client)?;
        Ok(())
    });
    let client = udp_bind(&net.host, addr(HOST_V4, 0))?;
    client.send_to(&question(5150, HOSTILE_NAME)?, addr(PEER_V4, 53))?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buffer = [0u8; 512];
    client.recv(&mut buffer).context("the resolver's answer")?;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the resolver panicked"))??;
    net.host.enter(|| -> Result<()> {
        let name = std::ffi::CString::new(HOSTILE_COMM)?;
        // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        let stream =
            std::net::TcpStream::connect_timeout(&addr(PEER_V4, 8080), Duration::from_secs(3))?;
        drop(stream);
        Ok(())
    })??;
    Ok(())
}

/// Every character a terminal acts on, bar the line's own end.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| c != '\n' && (c.is_control() || matches!(c, '\u{202a}'..='\u{202e}')))
        .collect()
}

#[test]
fn names_and_process_names_come_out_escaped_in_text() -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let mut child = fwlog_command(&net.host)
        .args([
            "watch",
            "--format",
            "text",
            "--color",
            "never",
            &net.host_if,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("piped")?;
    let stderr = child.stderr.take().context("piped")?;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("fwlog: watching") {
                let _ = ready_tx.send(());
            }
        }
    });
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut text);
        text
    });
    let started = ready.recv_timeout(fwlog_tests::patient(Duration::from_secs(30)));
    let traffic = started
        .context("fwlog watch did not start")
        .and_then(|()| hostile_lookup_and_connect(&net));
    std::thread::sleep(fwlog_tests::patient(Duration::from_millis(500)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGINT,
    )?;
    assert!(child.wait()?.success());
    traffic?;
    let text = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let line = text
        .lines()
        .find(|line| line.contains(&format!("{PEER_V4}:8080")) && line.contains(" accept "))
        .with_context(|| format!("no accept line to 8080 in\n{text}"))?;
    assert!(raw_controls(&text).is_empty(), "raw controls in\n{text:?}");
    assert!(
        line.contains(" ev\\u{1b}[31m\\u{a}il["),
        "the thread name, escaped: {line}"
    );
    assert!(
        line.contains(" dest_host=x\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{a}07:00:00.000\\u{20}accept\\u{9b}31m\\u{202e}.test"),
        "the name, escaped: {line}"
    );
    Ok(())
}

#[test]
fn names_and_process_names_come_out_escaped_in_summary() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    hostile_lookup_and_connect(&net)?;
    let verdict = fwlog.expect_event("the connection", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8080
    })?;
    // JSON carries them exactly (escaped by JSON itself).
    assert_eq!(verdict["dest_host"], HOSTILE_NAME);
    assert_eq!(verdict["process"]["comm"], HOSTILE_COMM);

    let dir = std::env::temp_dir().join(format!("fwlog-hostile-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("fw.jsonl");
    std::fs::write(&log, format!("{verdict}\n"))?;
    let output = Command::new(fwlog_bin())
        .arg("summary")
        .arg(&log)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout)?;
    assert!(raw_controls(&text).is_empty(), "raw controls in\n{text:?}");
    assert!(text.contains("ev\\u{1b}[31m\\u{a}il"), "{text}");
    assert!(text.contains("x\\u{1b}]0;owned"), "{text}");
    Ok(())
}

#[test]
fn summary_goes_on_past_a_corrupt_input_and_says_so() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("fwlog-summary-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let line = |port: u16| {
        format!(
            r#"{{"timestamp":"2026-11-25T07:09:10.000000Z","event_type":"verdict","action":"drop","direction":"inbound","proto":"tcp","src_ip":"203.0.113.7","src_port":1,"dest_ip":"192.0.2.10","dest_port":{port}}}"#
        )
    };
    let first = dir.join("fw.jsonl");
    let rotated = dir.join("fw.jsonl.1.gz");
    let older = dir.join("fw.jsonl.2.gz");
    std::fs::write(&first, format!("{}\n{}\n", line(22), line(23)))?;
    // gzip(1), then a run of its deflate stream overwritten: the reader fails mid-file.
    let body: String = (0..2000).map(|i| line(1000 + i % 50) + "\n").collect();
    let mut gzip = Command::new("gzip")
        .args(["-c", "-9"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("gzip")?;
    gzip.stdin
        .take()
        .context("stdin")?
        .write_all(body.as_bytes())?;
    let mut compressed = gzip.wait_with_output()?.stdout;
    let middle = compressed.len() / 2;
    compressed[middle..middle + 32].fill(0x5a);
    std::fs::write(&rotated, &compressed)?;
    std::fs::write(&older, b"\x1f\x8bnot gzip at all")?;

    let output = Command::new(fwlog_bin())
        .arg("summary")
        .args([&first, &rotated, &older])
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (
        String::from_utf8(output.stdout)?,
        String::from_utf8(output.stderr)?,
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("  {}: 2 lines\n", first.display())),
        "{stdout}"
    );
    for bad in [&rotated, &older] {
        let name = bad.display().to_string();
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("  {name}: ")) && l.contains("UNREADABLE")),
            "{name} in\n{stdout}"
        );
        assert!(stderr.contains(&name), "{name} in {stderr}");
    }
    assert!(
        stderr.starts_with("fwlog: 2 of 3 inputs could not be read to the end"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // The first file's two knocks, and what the rotated one gave before it broke, are counted.
    assert!(stdout.contains("203.0.113.7"), "{stdout}");
    Ok(())
}
