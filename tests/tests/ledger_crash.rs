//! Crash test: a child process appends to a ledger from four concurrent
//! writers and prints each acknowledged seq; it is killed with SIGKILL in
//! the middle of the stream, three times over the same file. After each
//! kill, every acknowledged entry is present and every chain verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use relay_node::ledger::Store;
use relay_proto::SecretKey;
use relay_tests::TempDir;

#[test]
fn every_acknowledged_append_survives_kill_9() {
    let dir = TempDir::new("ledger-crash").unwrap();
    let origin = SecretKey::from_bytes(&[1; 32]).node_id();
    let mut total_acked = 0;
    for round in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-crash"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a varying number of acknowledgements, mid-stream.
        let kill_after = 150 + round * 70;
        for line in lines.by_ref() {
            let line = line.unwrap();
            let seq: u64 = line.strip_prefix("acked ").unwrap().parse().unwrap();
            acked.push(seq);
            if acked.len() >= kill_after {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements still in the pipe were acknowledged too.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(seq) = line.strip_prefix("acked ") {
                acked.push(seq.parse().unwrap());
            }
        }
        assert!(acked.len() >= kill_after, "round {round}: child died early");
        total_acked += acked.len();

        let store = Store::open(dir.path()).unwrap();
        for seq in &acked {
            assert!(
                store.entry(&origin, *seq).unwrap().is_some(),
                "round {round}: acknowledged seq {seq} lost"
            );
        }
        let state = store.origin(&origin).unwrap().unwrap();
        assert!(state.frontier >= *acked.iter().max().unwrap());
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
        assert_eq!(report.entries, state.frontier, "no holes in the feed");
    }
    println!("{total_acked} acknowledged appends over 3 kills, all present");
}
