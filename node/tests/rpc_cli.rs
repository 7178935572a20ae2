//! nRPC through the CLI, across three real `relay-node` processes on
//! loopback: A and B serve `echo`, C joins by ticket and calls it.
//! `services` lists echo on both servers; `call echo.echo` from C works;
//! after B is killed, calls keep succeeding through A. B and C run on one
//! thread (`run --threads 1`), A on the default runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_relay-node");
/// Bound for the mesh to form and replicate; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

mod common;
use common::TempDir;

fn relay(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RELAY_NODE_DATA_DIR")
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `relay-node run` process, killed on drop.
struct Running(Child, PathBuf);

impl Running {
    fn spawn(dir: &Path, extra: &[&str]) -> Self {
        let log = dir.with_extension("log");
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["run", "--listen", "127.0.0.1:0", "--no-port-map"])
            .args(extra)
            .env_remove("RELAY_NODE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let me = Self(child, dir.to_path_buf());
        me.until("the api socket", || {
            relay(dir, &["id"]).status.success() && dir.join("api.sock").exists()
        });
        me
    }

    /// Polls `ok` every 100 ms until it holds, at most [`DEADLINE`].
    fn until(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let end = Instant::now() + DEADLINE;
        while !ok() {
            assert!(
                Instant::now() < end,
                "no {what} in time; log:\n{}",
                std::fs::read_to_string(self.1.with_extension("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_nodes(dir: &Path) -> Vec<String> {
    let o = relay(dir, &["services", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap_or_default();
    v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == "echo")
        .flat_map(|s| s["nodes"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n["node_id"].as_str().map(String::from))
        .collect()
}

#[test]
fn three_nodes_call_echo_and_survive_a_server_kill() {
    let tmp = TempDir::new("rpc-cli");
    let (a, b, c) = (tmp.0.join("a"), tmp.0.join("b"), tmp.0.join("c"));
    assert!(relay(&a, &["init"]).status.success());
    let node_a = Running::spawn(&a, &["--serve-echo"]);
    let ticket = out(&relay(&a, &["invite"])).trim().to_string();
    for dir in [&b, &c] {
        let o = relay(dir, &["init", "--join", &ticket]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // B and C run every task on one thread (`--threads 1`).
    let node_b = Running::spawn(&b, &["--serve-echo", "--threads", "1"]);
    let node_c = Running::spawn(&c, &["--threads", "1"]);
    let id = |d: &Path| out(&relay(d, &["id"])).trim().to_string();
    let (id_a, id_b) = (id(&a), id(&b));

    node_c.until("echo on A and B in C's services", || {
        let nodes = echo_nodes(&c);
        nodes.contains(&id_a) && nodes.contains(&id_b)
    });
    let table = out(&relay(&c, &["services"]));
    assert!(table.contains("echo") && table.contains(&id_b), "{table}");

    let o = relay(&c, &["call", "echo.echo", "hello"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out(&o), "hello\n");
    let o = relay(
        &c,
        &["call", "echo.stream", "x", "--stream", "--meta", "count=3"],
    );
    assert_eq!(
        out(&o),
        "x\nx\nx\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Nobody serves it: a typed error, exit 1.
    let o = relay(&c, &["call", "inventory.get"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: no-responders: "), "{err}");

    drop(node_b);
    for i in 0..6 {
        let body = format!("after-{i}");
        let o = relay(
            &c,
            &[
                "call",
                "echo.echo",
                &body,
                "--idempotent",
                "--timeout",
                "10000",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(out(&o), format!("{body}\n"));
    }
    drop(node_a);
}
