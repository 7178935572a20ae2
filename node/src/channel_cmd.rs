//! The `channel`, `sub` and `pub` verbs: their arguments and what they do,
//! all through the local API (`/v1/channels...`, `/v1/sub`, `/v1/pub`).

use std::io::{BufRead, Write};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use thiserror::Error;

use crate::api::client::{ApiClient, ClientError};
use crate::datadir::DataDir;

/// Messages per `/v1/pub` request when reading stdin.
const PUB_BATCH: usize = 1000;
/// Bytes of messages per `/v1/pub` request (the API takes 64 KiB bodies).
const PUB_BATCH_BYTES: usize = 40 * 1024;

/// `relay-node channel` sub-commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ChannelAction {
    /// Own a new channel and register it in the ledger.
    Create {
        /// The channel name (1-255 bytes).
        name: String,
        /// Subscribers and publishers need a token from this node.
        #[arg(long)]
        require_token: bool,
        /// Deliver as datagrams (drops counted) instead of reliably.
        #[arg(long)]
        best_effort: bool,
        /// Retain the last N messages, or messages younger than a
        /// duration (30s, 10m, 2h, 1d), for replay to new subscribers.
        #[arg(long, value_name = "N|DURATION")]
        history: Option<String>,
        /// Most messages per second the channel takes.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_rate: Option<u32>,
    },
    /// Withdraw a channel this node owns.
    Rm {
        /// The channel name.
        name: String,
    },
    /// Present a fresh token on this node's live subscriptions to NAME,
    /// without interrupting them.
    Refresh {
        /// The channel name.
        name: String,
        /// The fresh token (rnk1...) or @FILE holding one.
        #[arg(long, value_name = "TOKEN|@FILE")]
        token: String,
    },
    /// List every channel registered in the mesh.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `relay-node sub` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SubArgs {
    /// The channel name.
    pub name: String,
    /// A token (rnk1...) or @FILE holding one.
    #[arg(long, value_name = "TOKEN|@FILE")]
    pub token: Option<String>,
    /// Share messages with the other subscribers of this queue group.
    #[arg(long, value_name = "GROUP")]
    pub queue: Option<String>,
    /// Replay every retained message first.
    #[arg(long, conflicts_with = "last")]
    pub from_start: bool,
    /// Replay the last N retained messages first.
    #[arg(long, value_name = "N")]
    pub last: Option<u32>,
    /// Exit after N messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// What the owner does when this subscriber falls behind: block,
    /// drop-oldest or drop-newest.
    #[arg(long, value_name = "MODE", default_value = "block")]
    pub backpressure: String,
    /// One JSON object per message (seq, publisher, ts, data).
    #[arg(long)]
    pub json: bool,
}

/// `relay-node pub` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct PubArgs {
    /// The channel name.
    pub name: String,
    /// The message, or `-` for one message per line of stdin.
    #[arg(value_name = "MSG|-")]
    pub msg: String,
    /// A token (rnk1...) or @FILE holding one.
    #[arg(long, value_name = "TOKEN|@FILE")]
    pub token: Option<String>,
}

/// A channel verb failed before or after the API call.
#[derive(Debug, Error)]
pub enum ChannelCmdError {
    /// The API call failed.
    #[error(transparent)]
    Api(#[from] ClientError),
    /// Reading a token file or stdin failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl ChannelCmdError {
    /// The stable kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::Api(e) => e.kind(),
            Self::Io(_) => "io",
        }
    }
}

fn token_text(token: Option<&str>) -> Result<Option<String>, ChannelCmdError> {
    match token {
        Some(t) => match t.strip_prefix('@') {
            Some(path) => Ok(Some(std::fs::read_to_string(path)?.trim().to_string())),
            None => Ok(Some(t.trim().to_string())),
        },
        None => Ok(None),
    }
}

/// Percent-encodes a query value.
pub fn pct_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn out_line(out: &mut impl Write, line: &str) {
    let _ = writeln!(out, "{line}");
}

/// `relay-node channel ...`.
pub fn channel(dir: &DataDir, action: ChannelAction) -> Result<(), ChannelCmdError> {
    let mut client = ApiClient::connect(dir)?;
    let mut out = std::io::stdout().lock();
    match action {
        ChannelAction::Create {
            name,
            require_token,
            best_effort,
            history,
            max_rate,
        } => {
            let body = json!({
                "name": name, "require_token": require_token, "best_effort": best_effort,
                "history": history, "max_rate": max_rate,
            });
            let answer: Value = client.post("/v1/channels/create", &body)?;
            out_line(
                &mut out,
                &format!(
                    "created {} (owner {})",
                    name,
                    answer["owner"].as_str().unwrap_or("?")
                ),
            );
        }
        ChannelAction::Rm { name } => {
            let _: Value = client.post("/v1/channels/rm", &json!({ "name": name }))?;
            out_line(&mut out, &format!("removed {name}"));
        }
        ChannelAction::Refresh { name, token } => {
            let token = token_text(Some(&token))?;
            let answer: Value = client.post(
                "/v1/channels/refresh",
                &json!({ "name": name, "token": token }),
            )?;
            out_line(
                &mut out,
                &format!(
                    "refreshed {} subscription(s) to {name}",
                    answer["subscriptions"]
                ),
            );
        }
        ChannelAction::List { json } => {
            let answer: Value = client.get("/v1/channels")?;
            if json {
                out_line(
                    &mut out,
                    &serde_json::to_string_pretty(&answer).unwrap_or_default(),
                );
            } else {
                out_line(&mut out, &list_table(&answer));
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

/// The text table of `channel list`.
pub fn list_table(answer: &Value) -> String {
    let mut lines = vec![format!(
        "{:<24} {:<16} {:<6} {:<11} {:<10} {:>5} {:>10} {:>8}",
        "NAME", "OWNER", "TOKEN", "DELIVERY", "HISTORY", "SUBS", "MESSAGES", "DROPPED"
    )];
    let empty = Vec::new();
    for c in answer["channels"].as_array().unwrap_or(&empty) {
        let owner = c["owner"].as_str().unwrap_or("?");
        let p = &c["policy"];
        let stat = |k: &str| {
            c["stats"][k]
                .as_u64()
                .map_or_else(|| "-".to_string(), |v| v.to_string())
        };
        lines.push(format!(
            "{:<24} {:<16} {:<6} {:<11} {:<10} {:>5} {:>10} {:>8}",
            c["name"].as_str().unwrap_or("?"),
            owner.get(..16).unwrap_or(owner),
            if p["require_token"] == true {
                "yes"
            } else {
                "no"
            },
            if p["reliable"] == false {
                "best-effort"
            } else {
                "reliable"
            },
            p["history"].as_str().unwrap_or("?"),
            stat("subscribers"),
            stat("published"),
            stat("dropped"),
        ));
    }
    lines.join("\n")
}

/// `relay-node sub ...`.
pub fn sub(dir: &DataDir, args: SubArgs) -> Result<(), ChannelCmdError> {
    let mut query = vec![format!("name={}", pct_encode(&args.name))];
    if let Some(t) = token_text(args.token.as_deref())? {
        query.push(format!("token={}", pct_encode(&t)));
    }
    if let Some(q) = &args.queue {
        query.push(format!("queue={}", pct_encode(q)));
    }
    if args.from_start {
        query.push("start=from-start".into());
    } else if let Some(n) = args.last {
        query.push(format!("start=last:{n}"));
    }
    if let Some(c) = args.count {
        query.push(format!("count={c}"));
    }
    query.push(format!("backpressure={}", pct_encode(&args.backpressure)));
    let mut client = ApiClient::connect(dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failure = None;
    client.get_lines(&format!("/v1/sub?{}", query.join("&")), |line| {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return true;
        };
        if let Some(e) = v.get("error") {
            failure = Some(ClientError::Remote {
                kind: e["kind"].as_str().unwrap_or("unknown").to_string(),
                detail: e["detail"].as_str().unwrap_or("").to_string(),
            });
            return false;
        }
        if let Some(g) = v.get("gap") {
            let _ = out.flush();
            crate::logging::stderr_line(&format!(
                "gap: missed {}..={} of {}",
                g["from"],
                g["to"],
                g["publisher"].as_str().unwrap_or("?")
            ));
            if !args.json {
                return true;
            }
        }
        if args.json {
            out_line(&mut out, line);
        } else {
            out_line(&mut out, v["data"].as_str().unwrap_or(""));
        }
        // Each message as it arrives, also when stdout is a pipe.
        let _ = out.flush();
        true
    })?;
    let _ = out.flush();
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `relay-node pub ...`.
pub fn publish(dir: &DataDir, args: PubArgs) -> Result<(), ChannelCmdError> {
    let token = token_text(args.token.as_deref())?;
    let mut client = ApiClient::connect(dir)?;
    let mut send = |messages: &[String]| -> Result<Vec<(u64, u64)>, ChannelCmdError> {
        let answer: Value = client.post(
            "/v1/pub",
            &json!({"name": args.name, "token": token, "messages": messages}),
        )?;
        let empty = Vec::new();
        Ok(answer["results"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|r| {
                (
                    r["delivered"].as_u64().unwrap_or(0),
                    r["targets"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    };
    let mut out = std::io::stdout().lock();
    if args.msg != "-" {
        for (d, t) in send(std::slice::from_ref(&args.msg))? {
            out_line(&mut out, &format!("delivered {d}/{t}"));
        }
        return Ok(());
    }
    let (mut count, mut delivered, mut targets) = (0u64, 0u64, 0u64);
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = 0;
    let mut lines = std::io::stdin().lock().lines();
    loop {
        let line = lines.next().transpose()?;
        let end = line.is_none();
        if let Some(line) = line {
            bytes += line.len() + 8;
            batch.push(line);
        }
        let full = batch.len() >= PUB_BATCH || bytes >= PUB_BATCH_BYTES;
        if (full || end) && !batch.is_empty() {
            for (d, t) in send(&batch)? {
                count += 1;
                delivered += d;
                targets += t;
            }
            batch.clear();
            bytes = 0;
        }
        if end {
            break;
        }
    }
    out_line(
        &mut out,
        &format!("published {count} messages: delivered {delivered}/{targets}"),
    );
    Ok(())
}
