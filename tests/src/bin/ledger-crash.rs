//! Helper for the ledger crash test: appends to the ledger in DIR from
//! several concurrent writers, forever, and prints `acked SEQ` once each
//! append is durable. The test kills it with SIGKILL mid-stream.
//!
//! Usage: `ledger-crash DIR`

use std::io::Write;

use relay_node::ledger::Ledger;
use relay_proto::ledger::body::{PathOutcome, TraversalOutcome};
use relay_proto::ledger::Body;
use relay_proto::SecretKey;

const WRITERS: usize = 4;

fn body(n: u64) -> Body {
    Body::TraversalOutcome(TraversalOutcome {
        peer: SecretKey::from_bytes(&[2; 32]).node_id(),
        outcome: PathOutcome::Direct,
        time_to_direct_ms: Some(n),
        why: "crash-test".into(),
        birthday_packets: 0,
    })
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: ledger-crash DIR");
        std::process::exit(2);
    };
    let ledger = match Ledger::open(std::path::Path::new(&dir), SecretKey::from_bytes(&[1; 32])) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let ledger = ledger.clone();
            tasks.spawn(async move {
                for n in 0u64.. {
                    match ledger
                        .append_at(n, body(n * WRITERS as u64 + w as u64))
                        .await
                    {
                        Ok(stored) => {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "acked {}", stored.entry.seq);
                            let _ = out.flush();
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            std::process::exit(1);
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}
