//! Carries out one parsed command line: the glue between [`crate::cli`] and
//! the library. Writes results to stdout; returns errors for `main` to print
//! as `error: kind: detail`.

use std::io::Write;
use std::time::Duration;

use thiserror::Error;

use crate::api::client::{ApiClient, ClientError};
use crate::args::{self, ArgError};
use crate::cli::{Cli, Command};
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
                http,
                listen: args::host_port(&listen)?,
                peers: peers
                    .iter()
                    .map(|p| args::peer(p))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
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
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
