//! `relay-node token ...`: issue, delegate, inspect, verify and revoke
//! permission tokens. The token logic is `relay_proto::token`; this file
//! reads the identity and the clock, parses arguments and prints.
//! `issue`, `delegate`, `inspect` and `verify` work offline; `revoke` (and
//! the revocation check of `verify`) talk to the running node.

use std::io::Read;

use relay_proto::token::{
    self, ChannelPattern, Delegation, Grant, Request, Scope, TokenChain, TokenError, Verdict,
    MAX_TEXT,
};
use relay_proto::NodeId;
use thiserror::Error;

use crate::api::client::{ApiClient, ClientError};
use crate::api::tokens::{RevokeAnswer, RevokeRequest, REVOKE};
use crate::app::{print_line, print_text};
use crate::args::{self, ArgError};
use crate::datadir::DataDir;
use crate::keystore::{self, LoadKeyError};
use crate::revocations_set::unix_ms;
use crate::token_cmd_args::{duration_ms, DurationError, TokenAction};
use crate::token_cmd_view::{inspect_json, inspect_text, verdict_line};

/// A `token` verb failed.
#[derive(Debug, Error)]
pub enum TokenCmdError {
    /// The token was refused (`token: KIND: detail`).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A NodeId argument was rejected.
    #[error(transparent)]
    Arg(#[from] ArgError),
    /// A duration argument was rejected.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// The identity could not be read.
    #[error(transparent)]
    Key(#[from] LoadKeyError),
    /// The running node refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ClientError),
    /// An `@FILE` could not be read.
    #[error("io: cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl TokenCmdError {
    /// The stable kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::Token(_) => "token",
            Self::Arg(e) => e.kind(),
            Self::Duration(_) => "invalid-duration",
            Self::Key(e) => e.kind(),
            Self::Api(e) => e.kind(),
            Self::File { .. } => "io",
        }
    }
}

/// Runs one `token` verb for the node of `dir`.
pub fn run(dir: &DataDir, action: TokenAction) -> Result<(), TokenCmdError> {
    match action {
        TokenAction::Issue {
            subject,
            scope,
            channel,
            ttl,
            depth,
        } => {
            let grant = Grant {
                subject: args::node_id(&subject)?,
                scopes: scope.parse()?,
                channel: ChannelPattern::parse(&channel)?,
                ttl_ms: duration_ms(&ttl)?,
                depth,
            };
            let key = keystore::load_identity(dir)?;
            print_line(&token::issue(&key, &grant, unix_ms())?.to_text());
        }
        TokenAction::Delegate {
            token,
            subject,
            scope,
            channel,
            ttl,
            depth,
        } => {
            let parent = read_token(&token)?;
            let delegation = Delegation {
                subject: args::node_id(&subject)?,
                scopes: scope.parse()?,
                channel: channel.as_deref().map(ChannelPattern::parse).transpose()?,
                ttl_ms: ttl.as_deref().map(duration_ms).transpose()?,
                depth,
            };
            let key = keystore::load_identity(dir)?;
            print_line(&token::delegate(&parent, &key, &delegation, unix_ms())?.to_text());
        }
        TokenAction::Inspect { token, json } => {
            let chain = read_token(&token)?;
            if json {
                print_line(
                    &serde_json::to_string_pretty(&inspect_json(&chain)).unwrap_or_default(),
                );
            } else {
                print_text(&inspect_text(&chain));
            }
        }
        TokenAction::Verify {
            token,
            channel,
            scope,
            holder,
            owner,
            at,
        } => {
            let chain = read_token(&token)?;
            let now = at.unwrap_or_else(unix_ms);
            let holder = holder.as_deref().map(args::node_id).transpose()?;
            let owner = owner.as_deref().map(args::node_id).transpose()?;
            let verdict = verify(
                dir,
                &chain,
                now,
                channel.as_deref(),
                scope.as_deref(),
                holder,
                owner,
            )?;
            print_line(&verdict_line(&verdict));
        }
        TokenAction::Revoke {
            token,
            id,
            keep,
            reason,
        } => {
            let request = match (token, id) {
                (Some(text), _) => RevokeRequest {
                    token: Some(read_token(&text)?.to_text()),
                    reason,
                    ..RevokeRequest::default()
                },
                (None, id) => {
                    let keep = u64::try_from(duration_ms(&keep)?)
                        .ok()
                        .filter(|k| *k > 0)
                        .ok_or_else(|| DurationError(keep.clone()))?;
                    RevokeRequest {
                        id,
                        expires_unix_ms: Some(unix_ms().saturating_add(keep)),
                        reason,
                        ..RevokeRequest::default()
                    }
                }
            };
            let answer: RevokeAnswer = ApiClient::connect(dir)?.post(REVOKE, &request)?;
            print_line(&format!(
                "revoked {} until {} (ledger cursor {})",
                answer.id,
                crate::timefmt::rfc3339(answer.expires_unix_ms / 1000),
                answer.cursor
            ));
        }
    }
    Ok(())
}

/// Verifies `chain` at `now`: for a channel and scope if given, else the
/// chain alone. Revocations come from the running node, if there is one.
fn verify(
    dir: &DataDir,
    chain: &TokenChain,
    now: u64,
    channel: Option<&str>,
    scope: Option<&str>,
    holder: Option<NodeId>,
    owner: Option<NodeId>,
) -> Result<Verdict, TokenCmdError> {
    let fetched = crate::token_cmd_revocations::fetch(dir)?;
    let checked = fetched.is_some();
    let revocations = fetched.unwrap_or_default();
    let holder = holder.unwrap_or(chain.leaf().claims.subject);
    let trusted_root = owner.unwrap_or(chain.root().claims.issuer);
    let verdict = match (channel, scope) {
        (Some(channel), Some(scope)) => {
            let request = Request {
                holder,
                channel,
                scope: scope.parse::<Scope>()?,
                trusted_root,
            };
            token::verify(chain, now, &request, &revocations)?
        }
        _ => {
            let verdict = token::check(chain, now, &revocations)?;
            if verdict.root != trusted_root {
                return Err(TokenError::InvalidSignature(format!(
                    "the root is issued by {}, not by the channel owner {trusted_root}",
                    verdict.root
                ))
                .into());
            }
            if verdict.holder != holder {
                return Err(TokenError::WrongSubject(format!(
                    "the token is for {}, not {holder}",
                    verdict.holder
                ))
                .into());
            }
            verdict
        }
    };
    if !checked {
        crate::logging::stderr_line(
            "note: no node is running for this data dir; revocations were not checked",
        );
    }
    Ok(verdict)
}

/// A token argument: the text itself, or `@FILE` holding it (surrounding
/// whitespace in the file is ignored).
pub fn read_token(arg: &str) -> Result<TokenChain, TokenCmdError> {
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(TokenChain::from_text(arg)?);
    };
    let file_error = |source| TokenCmdError::File {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(file_error)?
        .take(MAX_TEXT as u64 + 64)
        .read_to_string(&mut text)
        .map_err(file_error)?;
    Ok(TokenChain::from_text(text.trim())?)
}
