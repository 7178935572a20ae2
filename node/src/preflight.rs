//! `run`'s checks before any side effect: everything that can be refused
//! from the flags and the files already in the data dir is refused here,
//! before the data dir is created or locked, an identity is made, or a
//! socket is bound. A refused `run` leaves nothing behind.
//!
//! Checked: the HTTP endpoint's address rules and token file (the same
//! rules [`crate::http::HttpServer::bind`] applies), an existing identity
//! and its network key, and the bootstrap file. What only the OS can
//! answer (a port in use, another node holding the data dir) is found out
//! later, by trying.

use crate::bootstrap::Bootstrap;
use crate::datadir::DataDir;
use crate::http::auth::TokenDigest;
use crate::http::{HttpError, HttpOptions};
use crate::keystore;
use crate::run::{RunError, RunOptions};

/// Checks `options` and the data dir's existing files; reads only.
pub fn preflight(dir: &DataDir, options: &RunOptions) -> Result<(), RunError> {
    if let Some(http) = &options.http {
        check_http(http)?;
    }
    // A missing identity is created by `run`; an existing one must load,
    // with its network key, before anything is written.
    if keystore::identity_exists(dir) {
        keystore::load_keys(dir)?;
    }
    Bootstrap::load(dir)?;
    Ok(())
}

/// The HTTP endpoint's rules: loopback, unless remote access is allowed
/// explicitly and a usable token file is given.
fn check_http(options: &HttpOptions) -> Result<(), HttpError> {
    let addr = options.addr;
    if !addr.ip().is_loopback() {
        if !options.allow_remote {
            return Err(HttpError::NotLoopback(addr));
        }
        if options.token_file.is_none() {
            return Err(HttpError::TokenRequired(addr));
        }
    }
    if let Some(path) = &options.token_file {
        TokenDigest::from_file(path).map_err(HttpError::Token)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn options(http: Option<HttpOptions>) -> RunOptions {
        RunOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            peers: Vec::new(),
            relay: false,
            public_addr: None,
            traversal: true,
            port_map: false,
            port_map_protocols: None,
            birthday: true,
            serve_echo: false,
            http,
        }
    }

    fn http(addr: &str, allow_remote: bool, token_file: Option<std::path::PathBuf>) -> HttpOptions {
        HttpOptions {
            addr: addr.parse().unwrap(),
            allow_remote,
            token_file,
        }
    }

    fn kind(result: Result<(), RunError>) -> &'static str {
        result.map(|()| "ok").unwrap_or_else(|e| e.kind())
    }

    #[test]
    fn http_rules_are_checked_without_touching_the_dir() {
        let root = crate::testutil::temp_dir("preflight-http");
        let dir = DataDir::new(root.join("data"));
        let token = root.join("token");
        std::fs::write(&token, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cases = [
            (http("127.0.0.1:0", false, None), "ok"),
            (http("0.0.0.0:0", false, None), "http-not-loopback"),
            (http("0.0.0.0:0", true, None), "http-token-required"),
            (http("0.0.0.0:0", true, Some(token.clone())), "ok"),
            (
                http("127.0.0.1:0", false, Some(root.join("missing"))),
                "http-token",
            ),
        ];
        for (h, want) in cases {
            assert_eq!(
                kind(preflight(&dir, &options(Some(h.clone())))),
                want,
                "{h:?}"
            );
        }
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let h = http("127.0.0.1:0", false, Some(token));
        assert_eq!(kind(preflight(&dir, &options(Some(h)))), "http-token");
        assert!(!dir.root().exists(), "preflight created the data dir");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_identity_without_its_network_key_is_refused() {
        let root = crate::testutil::temp_dir("preflight-keys");
        let dir = DataDir::new(&root);
        assert_eq!(kind(preflight(&dir, &options(None))), "ok");
        crate::init::init(&dir, None).unwrap();
        assert_eq!(kind(preflight(&dir, &options(None))), "ok");
        std::fs::remove_file(dir.network_key_path()).unwrap();
        assert_eq!(kind(preflight(&dir, &options(None))), "no-network-key");
        std::fs::write(dir.bootstrap_path(), "{not json").unwrap();
        crate::init::init(&DataDir::new(root.join("other")), None).unwrap();
        std::fs::copy(
            root.join("other").join("network.key"),
            dir.network_key_path(),
        )
        .unwrap();
        assert_eq!(kind(preflight(&dir, &options(None))), "corrupt-config");
        std::fs::remove_dir_all(root).unwrap();
    }
}
