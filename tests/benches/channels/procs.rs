//! The channels bench through the local API from separate processes:
//! a publisher process → node A (the owner) → node B → a subscriber
//! process. Both nodes are real `relay-node run` processes on loopback;
//! the publisher and the subscriber are this bench binary run again
//! (`RELAY_BENCH_CHANNELS_CHILD=pub|sub`), speaking the
//! `/v1/stream/channels` binary frames over the nodes' API sockets and
//! batching many frames per write. The subscriber checks that every
//! message comes, in order; the publisher that every one is acknowledged.
//! The rate is messages over the time from the publisher's first write to
//! the subscriber's last message (both read the system clock).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_tests::{relay_node_bin, run_cli, NodeProcess, TempDir};

const CHILD: &str = "RELAY_BENCH_CHANNELS_CHILD";
const DIR: &str = "RELAY_BENCH_CHANNELS_DIR";
const NAME: &str = "RELAY_BENCH_CHANNELS_NAME";
const COUNT: &str = "RELAY_BENCH_CHANNELS_COUNT";
/// Frames the publisher puts in one write.
const WRITE_BATCH: usize = 1024;
const DEADLINE: Duration = Duration::from_secs(120);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Runs the child role this process was started for, if any.
pub fn child_main() -> bool {
    let Ok(role) = std::env::var(CHILD) else {
        return false;
    };
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let name = std::env::var(NAME).unwrap();
    let count: u64 = std::env::var(COUNT).unwrap().parse().unwrap();
    match role.as_str() {
        "sub" => subscriber(&dir, &name, count),
        "pub" => publisher(&dir, &name, count),
        other => panic!("unknown child role {other}"),
    }
    true
}

/// Upgrades a connection to the node's `channels` frame stream and opens
/// it with `open` (JSON).
fn open_stream(dir: &Path, open: &str) -> UnixStream {
    let mut s = UnixStream::connect(dir.join("api.sock")).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(
        b"GET /v1/stream/channels HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
          Upgrade: relay-node-frames/1\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    write_frame(&mut s, open.as_bytes());
    let answer = read_frame(&mut s).unwrap();
    assert_eq!(
        answer,
        br#"{"ok":true}"#,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    s
}

fn write_frame(w: &mut impl Write, payload: &[u8]) {
    w.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    w.write_all(payload).unwrap();
}

fn read_frame(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut f).ok()?;
    Some(f)
}

fn subscriber(dir: &Path, name: &str, count: u64) {
    let s = open_stream(dir, &format!(r#"{{"op":"sub","name":"{name}"}}"#));
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut r = BufReader::with_capacity(256 * 1024, s);
    for n in 1..=count {
        let f = read_frame(&mut r).expect("subscription stream ended");
        assert_eq!(f[0], 0x01, "a message, not a gap or an end");
        let seq = u64::from_be_bytes(f[33..41].try_into().unwrap());
        let (m, _) = super::node::read_payload(&f[49..]);
        assert_eq!((seq, m), (n, n), "order, none missing");
    }
    println!("end {}", now_ns());
}

fn publisher(dir: &Path, name: &str, count: u64) {
    let s = open_stream(dir, &format!(r#"{{"op":"pub","name":"{name}"}}"#));
    let acks = {
        let mut r = BufReader::with_capacity(256 * 1024, s.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while let Some(f) = read_frame(&mut r) {
                assert_eq!(f[0], 0x04, "{}", String::from_utf8_lossy(&f));
                n += 1;
            }
            n
        })
    };
    println!("start {}", now_ns());
    std::io::stdout().flush().unwrap();
    let mut w = BufWriter::with_capacity(WRITE_BATCH * (4 + super::node::MESSAGE), &s);
    for n in 1..=count {
        write_frame(&mut w, &super::node::payload(n, false));
    }
    w.flush().unwrap();
    drop(w);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let acked = acks.join().unwrap();
    assert_eq!(acked, count, "every message acknowledged");
    println!("acked {acked}");
}

/// Starts this binary as a child in `role`; returns it and its stdout
/// lines.
fn child(
    role: &str,
    dir: &Path,
    name: &str,
    count: u64,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, role)
        .env(DIR, dir)
        .env(NAME, name)
        .env(COUNT, count.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(c.stdout.take().unwrap()).lines();
    (c, lines)
}

/// The value of the first line starting with `tag`.
fn tagged(lines: &mut impl Iterator<Item = std::io::Result<String>>, tag: &str) -> u128 {
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with(tag)))
        .unwrap_or_else(|| panic!("child never printed {tag:?}"));
    line[tag.len()..].trim().parse().unwrap_or(0)
}

fn cli_ok(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = run_cli(bin, dir, args).unwrap();
    assert!(out.success(), "{args:?}: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// Median msgs/s of `repeats` runs of `count` messages.
pub fn run(count: u64, repeats: usize) -> f64 {
    let bin = relay_node_bin().unwrap();
    let tmp = TempDir::new("chp").unwrap();
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    cli_ok(&bin, &a, &["init"]);
    let listen = crate::common::run_args(&["--listen", "127.0.0.1:0"]);
    let listen: Vec<&str> = listen.iter().map(String::as_str).collect();
    let node_a = NodeProcess::start(&bin, &a, &listen, DEADLINE).unwrap();
    let ticket = cli_ok(&bin, &a, &["invite", "--addr", &node_a.listen.to_string()]);
    cli_ok(&bin, &b, &["init", "--join", &ticket]);
    let _node_b = NodeProcess::start(&bin, &b, &listen, DEADLINE).unwrap();
    let mut rates = Vec::new();
    for i in 0..repeats {
        let name = format!("procs-{i}");
        cli_ok(&bin, &a, &["channel", "create", &name]);
        let end = Instant::now() + DEADLINE;
        while !cli_ok(&bin, &b, &["channel", "list", "--json"]).contains(&name) {
            assert!(Instant::now() < end, "B never learned the channel");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (mut sub, mut sub_out) = child("sub", &b, &name, count);
        tagged(&mut sub_out, "ready");
        let (mut publ, mut pub_out) = child("pub", &a, &name, count);
        let start = tagged(&mut pub_out, "start ");
        let end = tagged(&mut sub_out, "end ");
        tagged(&mut pub_out, "acked ");
        assert!(sub.wait().unwrap().success() && publ.wait().unwrap().success());
        rates.push(count as f64 / ((end - start) as f64 / 1e9));
    }
    drop(node_a);
    super::median(rates)
}
