//! The HTTP endpoint's bearer token. The node reads the token file once and
//! keeps only the token's SHA-256 digest; a request's `Authorization:
//! Bearer <token>` is hashed and compared with it in constant time (`subtle`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ring::digest::{digest, SHA256, SHA256_OUTPUT_LEN};
use subtle::ConstantTimeEq;

/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// The SHA-256 digest of the configured token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; SHA256_OUTPUT_LEN]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &[u8]) -> Self {
        let mut out = [0u8; SHA256_OUTPUT_LEN];
        out.copy_from_slice(digest(&SHA256, token).as_ref());
        Self(out)
    }

    /// Reads a token file: the token is the file's text without surrounding
    /// whitespace. The file must not be readable by group or others, and the
    /// token must be at least [`MIN_TOKEN_LEN`] bytes without whitespace.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by group or others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let token = text.trim_ascii();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "{}: the token must be at least {MIN_TOKEN_LEN} bytes",
                path.display()
            ));
        }
        if token
            .iter()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "{}: the token must not contain whitespace or control characters",
                path.display()
            ));
        }
        Ok(Self::of(token))
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let theirs = Self::of(token.trim().as_bytes());
        self.0.ct_eq(&theirs.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let d = TokenDigest::of(b"0123456789abcdef");
        assert!(d.admits(Some("Bearer 0123456789abcdef")));
        assert!(d.admits(Some("bearer  0123456789abcdef ")));
        assert!(!d.admits(None));
        assert!(!d.admits(Some("Bearer 0123456789abcdeX")));
        assert!(!d.admits(Some("Basic 0123456789abcdef")));
        assert!(!d.admits(Some("Bearer")));
        assert_eq!(format!("{d:?}"), "TokenDigest(..)");
    }

    #[test]
    fn token_files() {
        let root = crate::testutil::temp_dir("token");
        let path = root.join("token");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let d = TokenDigest::from_file(&path).unwrap();
        assert!(d.admits(Some("Bearer 0123456789abcdef")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(TokenDigest::from_file(&path)
            .unwrap_err()
            .contains("chmod 600"));
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(TokenDigest::from_file(&path)
            .unwrap_err()
            .contains("at least"));
        std::fs::write(&path, "0123456789 abcdef").unwrap();
        assert!(TokenDigest::from_file(&path)
            .unwrap_err()
            .contains("whitespace"));
        assert!(TokenDigest::from_file(&root.join("missing")).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
