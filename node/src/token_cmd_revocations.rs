//! The revocations `token verify` checks: every `token-revocation` entry in
//! the running node's ledger, read page by page through the local API
//! (`GET /v1/ledger?kind=token-revocation`) into a [`RevocationTable`].

use relay_proto::ledger::body::TokenRevocation;
use relay_proto::NodeId;
use serde_json::Value;

use crate::api::client::{ApiClient, ClientError};
use crate::api::ledger::MAX_LIMIT;
use crate::api::request::hex_decode;
use crate::datadir::DataDir;
use crate::revocations::RevocationTable;
use crate::revocations_set::unix_ms;

/// The running node's revocations; `None` if no node runs for `dir`.
pub fn fetch(dir: &DataDir) -> Result<Option<RevocationTable>, ClientError> {
    let mut client = match ApiClient::connect(dir) {
        Ok(client) => client,
        Err(ClientError::NotRunning { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let now = unix_ms();
    let mut table = RevocationTable::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/ledger?kind=token-revocation&limit={MAX_LIMIT}");
        if let Some(cursor) = &after {
            path.push_str(&format!("&after={cursor}"));
        }
        let page: Value = client.get(&path)?;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            return Ok(Some(table));
        }
        for entry in &entries {
            if let Some((origin, body)) = revocation(entry) {
                table.apply(origin, &body, now);
            }
        }
        after = page["cursor"].as_str().map(str::to_owned);
        if after.is_none() {
            return Ok(Some(table));
        }
    }
}

/// The origin and body of one entry as `GET /v1/ledger` shows it.
fn revocation(entry: &Value) -> Option<(NodeId, TokenRevocation)> {
    let origin = entry["origin"].as_str()?.parse().ok()?;
    let body = &entry["body"];
    let token_id: [u8; 32] = hex_decode(body["token_id"].as_str()?)?.try_into().ok()?;
    Some((
        origin,
        TokenRevocation {
            token_id,
            expires_unix_ms: body["expires_unix_ms"].as_u64()?,
            reason: String::new(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::token::{Revocations, TokenId};
    use relay_proto::SecretKey;
    use serde_json::json;

    #[test]
    fn entries_as_the_api_shows_them() {
        let origin = SecretKey::from_bytes(&[1; 32]).node_id();
        let id = TokenId::from_bytes([3; 16]);
        let entry = json!({
            "origin": origin.to_string(),
            "kind": "token-revocation",
            "body": {
                "token_id": crate::api::request::hex_encode(&id.revocation_key()),
                "expires_unix_ms": u64::MAX,
                "reason": "r",
            },
        });
        let (o, body) = revocation(&entry).unwrap();
        let mut table = RevocationTable::new();
        table.apply(o, &body, 0);
        assert!(table.is_revoked(&id, &[origin]));
        assert!(revocation(&json!({"origin": "x"})).is_none());
    }
}
