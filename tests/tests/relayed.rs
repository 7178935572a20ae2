//! Three `relay-node` processes on loopback: R runs with `--relay`, A and B
//! know only R (A from its join ticket, B from `--peer`). A pings B by
//! NodeId alone and the pong comes back over a relayed path through R.
//! When A leaves, R's ledger records the session and B holds the entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use relay_tests::process::poll_until;
use relay_tests::{relay_node_bin, run_cli, CliOutput, NodeProcess, TempDir};

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

fn cli(dir: &Path, args: &[&str]) -> CliOutput {
    run_cli(&relay_node_bin().unwrap(), dir, args).unwrap()
}

fn start(dir: &Path, extra: &[&str]) -> NodeProcess {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    NodeProcess::start(&relay_node_bin().unwrap(), dir, &args, DEADLINE).unwrap()
}

fn status(dir: &Path) -> Option<serde_json::Value> {
    let out = cli(dir, &["status", "--json"]);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

fn peer<'a>(status: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == id)
}

#[test]
fn ping_by_node_id_through_a_relay_process() {
    let tmp = TempDir::new("relayed").unwrap();
    let (dir_r, dir_a, dir_b) = (tmp.join("r"), tmp.join("a"), tmp.join("b"));

    let init_r = cli(&dir_r, &["init"]);
    assert!(init_r.success(), "{init_r:?}");
    let mut node_r = start(&dir_r, &["--relay"]);
    let id_r = node_r.node_id.clone();
    let addr_r = format!("127.0.0.1:{}", node_r.listen.port());
    let ticket = cli(&dir_r, &["invite", "--addr", &addr_r]);
    assert!(ticket.success(), "{ticket:?}");
    let ticket = ticket.stdout.trim().to_string();

    for dir in [&dir_a, &dir_b] {
        let init = cli(dir, &["init", "--join", &ticket]);
        assert!(init.success(), "{init:?}");
    }
    let peer_r = format!("{id_r}@{addr_r}");
    // Traversal off: on loopback A and B would go direct at once.
    let mut node_a = start(&dir_a, &["--no-traversal"]);
    let mut node_b = start(&dir_b, &["--no-traversal", "--peer", &peer_r]);
    let (id_a, id_b) = (node_a.node_id.clone(), node_b.node_id.clone());

    // R serves both as relay clients.
    let r_status = poll_until(DEADLINE, POLL, || {
        status(&dir_r).filter(|s| s["relay"]["clients"] == 2)
    });
    assert!(
        r_status.is_some(),
        "R never had two clients; R:\n{}\nA:\n{}\nB:\n{}",
        node_r.stderr_log(),
        node_a.stderr_log(),
        node_b.stderr_log()
    );
    let r_status = r_status.unwrap();
    assert_eq!(r_status["relay"]["enabled"], true);
    assert!(r_status["relay"]["limits"]["rate_bytes_per_sec"].as_u64() > Some(0));

    // A knows no address for B: the ping goes through R.
    let ping = poll_until(DEADLINE, POLL, || {
        let out = cli(&dir_a, &["ping", &id_b, "-c", "3", "-i", "50"]);
        out.success().then_some(out)
    });
    let ping = ping.unwrap_or_else(|| {
        panic!(
            "ping never succeeded; A:\n{}\nB:\n{}",
            node_a.stderr_log(),
            node_b.stderr_log()
        )
    });
    let pongs: Vec<&str> = ping.stdout.lines().collect();
    assert_eq!(pongs.len(), 3, "{ping:?}");
    for line in pongs {
        assert!(
            line.starts_with(&format!("pong from {id_b} via relayed {id_r} in ")),
            "{line}"
        );
    }

    let a_status = status(&dir_a).unwrap();
    let b_in_a = peer(&a_status, &id_b).expect("A lists B");
    assert_eq!(b_in_a["state"], "connected");
    assert_eq!(b_in_a["path"], "relayed");
    assert_eq!(b_in_a["via"], id_r.as_str());
    assert_eq!(b_in_a["remote_addr"], serde_json::Value::Null);
    assert_eq!(a_status["relay"]["enabled"], false);
    let b_status = poll_until(DEADLINE, POLL, || {
        status(&dir_b).filter(|s| peer(s, &id_a).is_some_and(|p| p["path"] == "relayed"))
    });
    assert!(b_status.is_some(), "B never listed A as relayed");
    let r_status = status(&dir_r).unwrap();
    assert_eq!(r_status["relay"]["sessions"], 1);
    assert!(r_status["relay"]["bytes_forwarded"].as_u64() > Some(0));

    // R records the session in its ledger when it closes (A leaves), and
    // B, a member connected to R, gets the entry. Pinging for 11 s makes
    // it a session of its own (shorter ones are summed for a minute).
    let long = cli(&dir_a, &["ping", &id_b, "-c", "12", "-i", "1000"]);
    assert!(long.success(), "{long:?}");
    node_a.signal("TERM").unwrap();
    assert!(node_a.wait_exit(DEADLINE).unwrap().success());
    let session = poll_until(DEADLINE, POLL, || {
        let args = [
            "ledger",
            "--origin",
            &id_r,
            "--kind",
            "relay-session",
            "--json",
        ];
        let out = cli(&dir_b, &args);
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| {
                let ends = [e["body"]["a"].as_str(), e["body"]["b"].as_str()];
                ends.contains(&Some(id_a.as_str())) && ends.contains(&Some(id_b.as_str()))
            })
    });
    let session = session.unwrap_or_else(|| {
        panic!(
            "B never held R's relay-session entry; R:\n{}\nB:\n{}",
            node_r.stderr_log(),
            node_b.stderr_log()
        )
    });
    assert_eq!(session["body"]["phase"], "closed", "{session}");
    assert!(
        session["body"]["duration_ms"].as_u64() >= Some(11_000),
        "{session}"
    );
    assert!(session["body"]["packets"].as_u64() >= Some(24), "{session}");

    for node in [&mut node_b, &mut node_r] {
        node.signal("TERM").unwrap();
        assert!(node.wait_exit(DEADLINE).unwrap().success());
    }
}
