//! The `channel`, `sub` and `pub` verbs: their arguments and what they do,
//! all through the local API (`/v1/channels...`; the `channels` frame
//! stream for `sub` and `pub`).

use std::io::{BufRead, Write};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use thiserror::Error;

use crate::api::channels_client::{ChannelStream, StreamEvent};
use crate::api::client::{ApiClient, ClientError};
use crate::datadir::DataDir;

/// Bytes of messages `pub -` queues before a write.
const PUB_WRITE_BYTES: usize = 64 * 1024;

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
    /// Messages the owner may send ahead of what was printed (the memory
    /// bound: this many of the channel's largest messages).
    #[arg(long, value_name = "N", default_value_t = relay_channels::DEFAULT_WINDOW,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(relay_channels::MAX_WINDOW)))]
    pub window: u32,
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

/// `relay-node sub ...`: over the `channels` frame stream (many events
/// per read); `--json` prints the objects of `GET /v1/sub`.
pub fn sub(dir: &DataDir, args: SubArgs) -> Result<(), ChannelCmdError> {
    let start = if args.from_start {
        "from-start".to_string()
    } else if let Some(n) = args.last {
        format!("last:{n}")
    } else {
        "live".to_string()
    };
    let open = json!({
        "op": "sub",
        "name": args.name,
        "token": token_text(args.token.as_deref())?,
        "queue": args.queue,
        "start": start,
        "backpressure": args.backpressure,
        "window": args.window,
    });
    let mut stream = ChannelStream::open(dir, &open)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut received = 0u64;
    let result = loop {
        if args.count.is_some_and(|c| received >= c) {
            break Ok(());
        }
        // Write what was printed before waiting for more.
        if stream.pending() == 0 {
            let _ = out.flush();
        }
        let event = match stream.next_event() {
            Ok(Some(e)) => e,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match event {
            StreamEvent::Message {
                publisher,
                seq,
                ts,
                data,
            } => {
                received += 1;
                let text = String::from_utf8_lossy(&data);
                if args.json {
                    let line = json!({
                        "seq": seq, "publisher": publisher.to_string(), "ts": ts, "data": text,
                    });
                    out_line(&mut out, &line.to_string());
                } else {
                    out_line(&mut out, &text);
                }
            }
            StreamEvent::Gap {
                publisher,
                from,
                to,
            } => {
                let _ = out.flush();
                crate::logging::stderr_line(&format!("gap: missed {from}..={to} of {publisher}"));
                if args.json {
                    let line = json!({
                        "gap": {"publisher": publisher.to_string(), "from": from, "to": to},
                    });
                    out_line(&mut out, &line.to_string());
                }
            }
        }
    };
    let _ = out.flush();
    Ok(result?)
}

/// What the node acknowledged on a publishing stream.
#[derive(Debug, Default, Clone, Copy)]
struct Acked {
    count: u64,
    delivered: u64,
    targets: u64,
}

/// Reads acknowledgements until the node closes the stream.
fn read_acks(mut stream: ChannelStream) -> Result<Acked, ClientError> {
    let mut acked = Acked::default();
    while let Some((d, t)) = stream.next_ack()? {
        acked.count += 1;
        acked.delivered += u64::from(d);
        acked.targets += u64::from(t);
    }
    Ok(acked)
}

/// `relay-node pub ...`: over the `channels` frame stream, messages
/// written many per write while a second thread reads acknowledgements.
pub fn publish(dir: &DataDir, args: PubArgs) -> Result<(), ChannelCmdError> {
    let open = json!({
        "op": "pub",
        "name": args.name,
        "token": token_text(args.token.as_deref())?,
    });
    let stream = ChannelStream::open(dir, &open)?;
    let mut writer = stream.writer()?;
    let reader = std::thread::spawn(move || read_acks(stream));
    let written = (|| -> Result<(), ChannelCmdError> {
        if args.msg != "-" {
            writer.queue(args.msg.as_bytes())?;
        } else {
            for line in std::io::stdin().lock().lines() {
                writer.queue(line?.as_bytes())?;
                if writer.queued() >= PUB_WRITE_BYTES {
                    writer.flush()?;
                }
            }
        }
        Ok(writer.finish()?)
    })();
    if written.is_err() {
        // Stop the reader too: the node would wait for more messages.
        writer.abort();
    }
    let acked = reader
        .join()
        .unwrap_or_else(|_| Err(ClientError::Protocol("the ack reader failed".into())));
    // The node's own error (e.g. `token: scope`) explains a failed write.
    let acked = acked?;
    written?;
    let mut out = std::io::stdout().lock();
    if args.msg != "-" {
        if acked.count != 1 {
            return Err(
                ClientError::Protocol("the node closed without an acknowledgement".into()).into(),
            );
        }
        out_line(
            &mut out,
            &format!("delivered {}/{}", acked.delivered, acked.targets),
        );
    } else {
        out_line(
            &mut out,
            &format!(
                "published {} messages: delivered {}/{}",
                acked.count, acked.delivered, acked.targets
            ),
        );
    }
    Ok(())
}
