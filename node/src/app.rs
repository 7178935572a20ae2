//! Carries out one parsed command line: the glue between [`crate::cli`] and
//! the library. Writes results to stdout; returns errors for `main` to print
//! as `error: kind: detail`.

use std::io::Write;
use std::time::Duration;

use thiserror::Error;

use crate::api::client::{ApiClient, ClientError};
use crate::args::{self, ArgError};
use crate::cli::{Cli, Command, LedgerAction};
use crate::datadir::{DataDir, DataDirError};
use crate::http::HttpOptions;
use crate::init::{init, InitError};
use crate::invite::{invite, InviteError};
use crate::keystore::{self, LoadKeyError};
use crate::run::{run, RunError, RunOptions};
use crate::until_direct::{
    until_direct, ApiDriver, Progress, UntilDirectError, UntilDirectOptions,
};

/// Any failure of a command, printed as `kind: detail`.
#[derive(Debug, Error)]
pub enum AppError {
    /// A command-line value was rejected.
    #[error(transparent)]
    Arg(#[from] ArgError),
    /// No data dir.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// `init` failed.
    #[error(transparent)]
    Init(#[from] InitError),
    /// Loading keys failed.
    #[error(transparent)]
    Key(#[from] LoadKeyError),
    /// `invite` failed.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// `run` failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A local API request failed.
    #[error(transparent)]
    Api(#[from] ClientError),
    /// The async runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// `ping --until-direct` saw no direct path.
    #[error(transparent)]
    UntilDirect(#[from] UntilDirectError),
    /// `ledger verify` found a problem.
    #[error("ledger-problem: {0}")]
    LedgerProblem(String),
    /// A `channel`, `sub` or `pub` verb failed.
    #[error(transparent)]
    Channel(#[from] crate::channel_cmd::ChannelCmdError),
    /// A `token` verb failed.
    #[error(transparent)]
    Token(#[from] crate::token_cmd::TokenCmdError),
    /// A bad `call` argument.
    #[error(transparent)]
    RpcArg(#[from] crate::rpc_cmd::RpcArgError),
}

impl AppError {
    /// The stable kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::Arg(e) => e.kind(),
            Self::DataDir(e) => e.kind(),
            Self::Init(e) => e.kind(),
            Self::Key(e) => e.kind(),
            Self::Invite(e) => e.kind(),
            Self::Run(e) => e.kind(),
            Self::Api(e) => e.kind(),
            Self::Runtime(_) => "runtime",
            Self::UntilDirect(e) => &e.kind,
            Self::LedgerProblem(_) => "ledger-problem",
            Self::Channel(e) => e.kind(),
            Self::Token(e) => e.kind(),
            Self::RpcArg(e) => e.kind,
        }
    }
}

/// Runs one command.
pub fn execute(cli: Cli) -> Result<(), AppError> {
    let dir = DataDir::resolve(cli.data_dir)?;
    match cli.command {
        Command::Init { join } => {
            let ticket = join.as_deref().map(args::ticket).transpose()?;
            let id = init(&dir, ticket.as_ref())?;
            if let Some(ticket) = &ticket {
                eprintln!(
                    "joined the mesh of {}; it will be dialed at {}",
                    ticket.node_id,
                    join_addrs(&ticket.addrs)
                );
            }
            print_line(&id.to_string());
        }
        Command::Invite { addrs } => {
            let addrs = addrs
                .iter()
                .map(|a| args::host_port(a))
                .collect::<Result<Vec<_>, _>>()?;
            print_line(&invite(&dir, addrs)?.encode());
        }
        Command::Id => print_line(&keystore::load_identity(&dir)?.node_id().to_string()),
        Command::Run {
            listen,
            peers,
            relay,
            public_addr,
            no_traversal,
            no_port_map,
            port_map_protocols,
            no_birthday,
            http,
            http_allow_remote,
            http_token_file,
            serve_echo,
            threads,
        } => {
            let http = match http {
                Some(addr) => Some(HttpOptions {
                    addr: args::host_port(&addr)?,
                    allow_remote: http_allow_remote,
                    token_file: http_token_file,
                }),
                None => None,
            };
            let options = RunOptions {
                relay,
                public_addr: public_addr.map(|a| args::host_port(&a)).transpose()?,
                traversal: !no_traversal,
                port_map: !no_port_map,
                port_map_protocols: port_map_protocols.map(|l| l.0),
                birthday: !no_birthday,
                serve_echo,
                http,
                listen: args::host_port(&listen)?,
                peers: peers
                    .iter()
                    .map(|p| args::peer(p))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let runtime = match threads {
                Some(1) => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                Some(n) => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(usize::from(n))
                    .enable_all()
                    .build(),
                None => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build(),
            }
            .map_err(AppError::Runtime)?;
            runtime.block_on(run(&dir, options))?;
        }
        Command::Status { json } => {
            let status = ApiClient::connect(&dir)?.status()?;
            if json {
                let text = serde_json::to_string_pretty(&status).unwrap_or_default();
                print_line(&text);
            } else {
                print_text(&status.render_table());
            }
        }
        Command::Members { json } => {
            let answer: serde_json::Value = ApiClient::connect(&dir)?.get("/v1/members")?;
            if json {
                print_line(&serde_json::to_string_pretty(&answer).unwrap_or_default());
            } else {
                print_text(&crate::ledger_view::members_table(&answer));
            }
        }
        Command::Ledger {
            action: Some(LedgerAction::Verify { json }),
            ..
        } => {
            let report: serde_json::Value = ApiClient::connect(&dir)?.get("/v1/ledger/verify")?;
            if json {
                print_line(&serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print_text(&crate::ledger_view::verify_text(&report));
            }
            if report["ok"] != true {
                return Err(AppError::LedgerProblem(
                    "the ledger has bad signatures, broken links or forks (docs/LEDGER.md)".into(),
                ));
            }
        }
        Command::Ledger {
            action: None,
            origin,
            kind,
            after,
            limit,
            follow,
            json,
        } => {
            let mut query = Vec::new();
            if let Some(o) = origin {
                query.push(format!("origin={}", args::node_id(&o)?));
            }
            if let Some(k) = kind {
                query.push(format!("kind={}", args::entry_kind(&k)?.as_str()));
            }
            let after = after.map(|a| args::cursor(&a)).transpose()?;
            ledger_listing(&dir, &query, after, limit, follow, json)?;
        }
        Command::Channel { action } => crate::channel_cmd::channel(&dir, action)?,
        Command::Sub(args) => crate::channel_cmd::sub(&dir, args)?,
        Command::Pub(args) => crate::channel_cmd::publish(&dir, args)?,
        Command::Token { action } => crate::token_cmd::run(&dir, action)?,
        Command::Services(a) => print_text(&crate::rpc_cmd::services(&dir, &a)?),
        Command::Call(a) => print_text(&crate::rpc_cmd::call(&dir, &a)?),
        Command::Bench { target } => print_text(&crate::rpc_cmd::bench(&dir, &target)?),
        Command::Netcheck { json } => {
            let report = ApiClient::connect(&dir)?.netcheck()?;
            if json {
                print_line(&serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print_text(&report.render_text());
            }
        }
        Command::Ping {
            node_id,
            until_direct: true,
            interval_ms,
            timeout_ms,
            timeout,
            ..
        } => {
            let id = args::node_id(&node_id)?;
            let mut driver = ApiDriver::new(ApiClient::connect(&dir)?, id);
            let options = UntilDirectOptions {
                timeout: Duration::from_secs(timeout),
                interval: Duration::from_millis(interval_ms),
                ping_timeout: Duration::from_millis(timeout_ms),
            };
            until_direct(&mut driver, &id.to_string(), options, &mut |p| match p {
                Progress::Pong(pong) => print_line(&pong.line()),
                Progress::Error(e) => eprintln!("ping: {e}"),
            })?;
        }
        Command::Ping {
            node_id,
            count,
            interval_ms,
            timeout_ms,
            ..
        } => {
            let node_id = args::node_id(&node_id)?;
            let mut client = ApiClient::connect(&dir)?;
            for i in 0..count {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(interval_ms));
                }
                let pong = client.ping(&node_id, timeout_ms)?;
                print_line(&pong.line());
            }
        }
    }
    Ok(())
}

/// Prints entries page by page (the API caps a page), then with `follow`
/// tails new ones through `GET /v1/ledger?follow=1`.
fn ledger_listing(
    dir: &DataDir,
    query: &[String],
    mut after: Option<crate::ledger::Cursor>,
    limit: Option<u64>,
    follow: bool,
    json: bool,
) -> Result<(), AppError> {
    use crate::ledger_view::{entries_header, entry_row, table};
    let mut client = ApiClient::connect(dir)?;
    let mut left = limit.unwrap_or(u64::MAX);
    let max_page = crate::api::ledger::MAX_LIMIT as u64;
    let mut rows = vec![entries_header()];
    let path = |extra: Vec<String>| {
        let mut q: Vec<String> = query.to_vec();
        q.extend(extra);
        format!("/v1/ledger?{}", q.join("&"))
    };
    while left > 0 {
        let mut extra = vec![format!("limit={}", left.min(max_page))];
        if let Some(a) = after {
            extra.push(format!("after={a}"));
        }
        let page: serde_json::Value = client.get(&path(extra))?;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            break;
        }
        for e in &entries {
            if json {
                print_line(&e.to_string());
            } else {
                rows.push(entry_row(e));
            }
        }
        left = left.saturating_sub(entries.len() as u64);
        after = page["cursor"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .or(after);
    }
    if !json && (rows.len() > 1 || !follow) {
        print_text(&table(&rows));
    }
    if !follow || left == 0 {
        return Ok(());
    }
    let mut extra = vec!["follow=1".to_string()];
    if let Some(a) = after {
        extra.push(format!("after={a}"));
    }
    client.get_lines(&path(extra), |line| {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            return true;
        };
        if json {
            print_line(line);
        } else if e.get("error").is_some() {
            eprintln!("ledger: {}", e["error"]);
            return false;
        } else {
            print_text(&table(&[entry_row(&e)]));
        }
        left -= 1;
        left > 0
    })?;
    Ok(())
}

fn join_addrs(addrs: &[std::net::SocketAddr]) -> String {
    if addrs.is_empty() {
        return "no address (it must dial you)".into();
    }
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes a line to stdout; a closed stdout (e.g. `| head`) is not an error.
/// Prints one line to stdout (a closed stdout is ignored).
pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints text to stdout as is (a closed stdout is ignored).
pub(crate) fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
