//! The Python client's own tests (clients/python/tests), run by `cargo
//! test` against the real `relay-node` binary: `python3 -m unittest
//! discover -s clients/python/tests -v` with `RELAY_NODE_BIN` set. Fails if
//! any Python test fails or is skipped; prints `SKIPPED: python3 not found`
//! without python3. The Python run is bounded: after [`LIMIT`] its whole
//! process group (the nodes it started included) is killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use relay_tests::relay_node_bin;

/// The Python tests take a few seconds; this only stops a hung run.
const LIMIT: Duration = Duration::from_secs(300);

fn python3() -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then_some("python3")
}

#[test]
fn python_client_tests_pass() {
    let Some(python) = python3() else {
        println!("SKIPPED: python3 not found");
        return;
    };
    let bin = relay_node_bin().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let child = Command::new(python)
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "clients/python/tests",
            "-v",
        ])
        .current_dir(root)
        .env("RELAY_NODE_BIN", &bin)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hung run can be killed with its nodes.
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<std::io::Result<Output>>();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(LIMIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("the Python tests did not finish within {LIMIT:?}; killed them");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");
    assert!(output.status.success(), "Python tests failed:\n{stderr}");
    // unittest's summary: "Ran N tests" then "OK" (with "(skipped=N)" when
    // some were skipped, which must not happen with RELAY_NODE_BIN set).
    assert!(stderr.contains("\nOK"), "{stderr}");
    assert!(
        !stderr.contains("skipped"),
        "Python tests were skipped:\n{stderr}"
    );
    assert!(!stderr.contains("Ran 0 tests"), "{stderr}");
}
