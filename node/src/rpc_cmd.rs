//! The nRPC verbs of the CLI: `services`, `call` and `bench rpc`. Each is
//! a client of the running node's local API (`/v1/services`, `/v1/call`,
//! `/v1/bench/rpc`); failures print as the node's `kind: detail`.

use std::io::Read;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::api::client::ApiClient;
use crate::app::AppError;
use crate::args;
use crate::datadir::DataDir;
use crate::ledger_view::table;
use crate::token_cmd::read_token;

/// A bad `call` argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct RpcArgError {
    /// `invalid-target`, `invalid-meta` or `invalid-body`.
    pub kind: &'static str,
    /// What is wrong.
    pub detail: String,
}

impl RpcArgError {
    fn new(kind: &'static str, detail: String) -> Self {
        Self { kind, detail }
    }
}

/// Largest body `call` reads from stdin (`-`).
pub const MAX_STDIN_BODY: u64 = 48 * 1024;

/// `relay-node services`.
#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `relay-node call`.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// What to call: SERVICE.METHOD (e.g. echo.echo, echo.info).
    #[arg(value_name = "SERVICE.METHOD")]
    pub target: String,
    /// The request body (text); `-` reads it from stdin. Default: empty.
    #[arg(value_name = "BODY")]
    pub body: Option<String>,
    /// Call only this node.
    #[arg(long, value_name = "NODEID")]
    pub node: Option<String>,
    /// The whole call's deadline in milliseconds, retries included (1-60000).
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout: u64,
    /// The call is idempotent: it may be retried after it may have run,
    /// and hedged to a second node after 20 ms without an answer.
    #[arg(long)]
    pub idempotent: bool,
    /// Print every item of a server-streaming call, one per line.
    #[arg(long)]
    pub stream: bool,
    /// Metadata pair KEY=VALUE (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// A token for a service that requires one: the text (`rnk1...`) or
    /// `@FILE` holding it.
    #[arg(long, value_name = "TOKEN|@FILE")]
    pub token: Option<String>,
    /// Print JSON instead of the body.
    #[arg(long)]
    pub json: bool,
}

/// `relay-node bench` targets.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchTarget {
    /// Unary calls of echo.echo (or --service/--method) made by the
    /// running node: rate, p50, p99, errors.
    Rpc(BenchRpcArgs),
}

/// `relay-node bench rpc`.
#[derive(Debug, Clone, Args)]
pub struct BenchRpcArgs {
    /// Only this node.
    #[arg(long, value_name = "NODEID")]
    pub node: Option<String>,
    /// Concurrent callers (1-1024).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// Body size in bytes (0-1048576).
    #[arg(long, value_name = "B", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub size: u64,
    /// Seconds to run (1-60).
    #[arg(long, value_name = "S", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub duration: u64,
    /// The service.
    #[arg(long, default_value = "echo")]
    pub service: String,
    /// The method.
    #[arg(long, default_value = "echo")]
    pub method: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Splits `SERVICE.METHOD` at its last dot.
pub fn split_target(target: &str) -> Result<(String, String), RpcArgError> {
    match target.rsplit_once('.') {
        Some((s, m)) if !s.is_empty() && !m.is_empty() => Ok((s.to_string(), m.to_string())),
        _ => Err(RpcArgError::new(
            "invalid-target",
            format!("{target:?} is not SERVICE.METHOD"),
        )),
    }
}

/// `relay-node services`.
pub fn services(dir: &DataDir, a: &ServicesArgs) -> Result<String, AppError> {
    let answer: Value = ApiClient::connect(dir)?.get("/v1/services")?;
    if a.json {
        return Ok(serde_json::to_string_pretty(&answer).unwrap_or_default() + "\n");
    }
    Ok(services_table(&answer))
}

/// The `services` table: one row per (service, node).
pub fn services_table(answer: &Value) -> String {
    let list = answer["services"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "services none\n".into();
    }
    let mut rows = vec![["SERVICE", "NODE_ID", "PATH", "VERSION", "METHODS"]
        .map(String::from)
        .to_vec()];
    for s in &list {
        for n in s["nodes"].as_array().cloned().unwrap_or_default() {
            let methods: Vec<String> = n["methods"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.as_str().map(String::from))
                .collect();
            rows.push(vec![
                s["name"].as_str().unwrap_or("-").to_string(),
                n["node_id"].as_str().unwrap_or("-").to_string(),
                n["path"].as_str().unwrap_or("-").to_string(),
                n["version"].as_str().unwrap_or("-").to_string(),
                if methods.is_empty() {
                    "*".into()
                } else {
                    methods.join(",")
                },
            ]);
        }
    }
    table(&rows)
}

fn read_body(body: Option<&str>) -> Result<String, AppError> {
    match body {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_STDIN_BODY + 1)
                .read_to_string(&mut text)
                .map_err(|e| RpcArgError::new("invalid-body", format!("stdin: {e}")))?;
            if text.len() as u64 > MAX_STDIN_BODY {
                return Err(RpcArgError::new(
                    "invalid-body",
                    format!("the body exceeds {MAX_STDIN_BODY} bytes"),
                )
                .into());
            }
            Ok(text)
        }
        Some(t) => Ok(t.to_string()),
        None => Ok(String::new()),
    }
}

/// `relay-node call`: the lines to print.
pub fn call(dir: &DataDir, a: &CallArgs) -> Result<String, AppError> {
    let (service, method) = split_target(&a.target)?;
    let body = read_body(a.body.as_deref())?;
    let node = a.node.as_deref().map(args::node_id).transpose()?;
    let token = a.token.as_deref().map(read_token).transpose()?;
    let mut metadata = serde_json::Map::new();
    for pair in &a.meta {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            RpcArgError::new("invalid-meta", format!("{pair:?} is not KEY=VALUE"))
        })?;
        metadata.insert(k.to_string(), json!(v));
    }
    let request = json!({
        "service": service,
        "method": method,
        "body": body,
        "node_id": node.map(|n| n.to_string()),
        "timeout_ms": a.timeout,
        "idempotent": a.idempotent,
        "metadata": metadata,
        "stream": a.stream,
        "token": token.map(|t| t.to_text()),
    });
    let answer: Value = ApiClient::connect(dir)?.post("/v1/call", &request)?;
    if a.json {
        return Ok(serde_json::to_string_pretty(&answer).unwrap_or_default() + "\n");
    }
    let text = |m: &Value| {
        m["body"].as_str().map_or_else(
            || m["body_hex"].as_str().unwrap_or("").to_string(),
            String::from,
        )
    };
    let mut out = String::new();
    match answer["items"].as_array() {
        Some(items) => {
            for m in items {
                out.push_str(&text(m));
                out.push('\n');
            }
        }
        None => {
            out.push_str(&text(&answer));
            out.push('\n');
        }
    }
    Ok(out)
}

/// `relay-node bench rpc`.
pub fn bench(dir: &DataDir, target: &BenchTarget) -> Result<String, AppError> {
    let BenchTarget::Rpc(a) = target;
    let node = a.node.as_deref().map(args::node_id).transpose()?;
    let request = json!({
        "service": a.service,
        "method": a.method,
        "node_id": node.map(|n| n.to_string()),
        "concurrency": a.concurrency,
        "size": a.size,
        "duration_ms": a.duration * 1000,
    });
    crate::logging::stderr_line(&format!(
        "bench rpc: {}.{} c={} size={} B for {} s ...",
        a.service, a.method, a.concurrency, a.size, a.duration
    ));
    let r: Value = ApiClient::connect(dir)?.post("/v1/bench/rpc", &request)?;
    if a.json {
        return Ok(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n");
    }
    let us = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1} µs"));
    let mut out = format!(
        "calls {} errors {} rate {:.0}/s p50 {} p99 {}\n",
        r["calls"],
        r["errors"],
        r["rate"].as_f64().unwrap_or(0.0),
        us(&r["p50_us"]),
        us(&r["p99_us"])
    );
    if let Some(e) = r["first_error"].as_str() {
        out.push_str(&format!("first error: {e}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_the_last_dot() {
        assert_eq!(
            split_target("echo.echo").unwrap(),
            ("echo".into(), "echo".into())
        );
        assert!(split_target("echo").is_err());
        assert!(split_target(".x").is_err());
        assert!(split_target("x.").is_err());
    }

    #[test]
    fn services_table_has_a_row_per_node() {
        let answer = json!({"services": [{"name": "echo", "nodes": [
            {"node_id": "a", "path": "direct", "version": "1", "methods": ["echo"]},
            {"node_id": "b", "path": "relayed", "version": "1", "methods": []},
        ]}]});
        let t = services_table(&answer);
        assert!(t.contains("direct"), "{t}");
        assert!(t.contains("relayed"), "{t}");
        assert_eq!(t.lines().count(), 3);
        assert_eq!(services_table(&json!({})), "services none\n");
    }
}
