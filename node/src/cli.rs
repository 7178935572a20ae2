//! The command line (clap derive). Values arrive as strings and are parsed
//! by [`crate::args`] so that bad input gets this project's error kinds.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::datadir::ENV_DATA_DIR;

/// relay-node: an encrypted UDP mesh node.
#[derive(Debug, Parser)]
#[command(name = "relay-node", version, about = "relay-node: a node of an encrypted UDP mesh", long_about = None)]
pub struct Cli {
    /// Data directory [default: $RELAY_NODE_DATA_DIR, else ~/.local/share/relay-node].
    #[arg(long, global = true, env = ENV_DATA_DIR, value_name = "DIR", hide_env = true)]
    pub data_dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data dir with a new identity and network key (or join a mesh with --join).
    Init {
        /// Join the mesh described by this ticket (from `relay-node invite`).
        #[arg(long, value_name = "TICKET")]
        join: Option<String>,
    },
    /// Print a join ticket for this node. THE TICKET IS A SECRET: it contains the
    /// mesh network key; anyone holding it can join the mesh.
    #[command(
        long_about = "Print a join ticket: this node's NodeId, its reachable addresses and the \
        mesh network key.\n\nTHE TICKET IS A SECRET: it contains the network key, and anyone \
        holding it can join the mesh. Share it only over a private channel.\n\nAddresses: the \
        given --addr values; else the running node's bound addresses (a 0.0.0.0/[::] bind is \
        expanded to this host's outbound interface address)."
    )]
    Invite {
        /// An address where this node is reachable (repeatable).
        #[arg(long = "addr", value_name = "HOST:PORT")]
        addrs: Vec<String>,
    },
    /// Print this node's NodeId.
    Id,
    /// Run the node in the foreground (Ctrl-C or SIGTERM stops it).
    Run {
        /// UDP address to listen on.
        #[arg(long, value_name = "ADDR", default_value = crate::run::DEFAULT_LISTEN)]
        listen: String,
        /// A peer to keep connected (repeatable).
        #[arg(long = "peer", value_name = "NODEID@HOST:PORT")]
        peers: Vec<String>,
        /// Relay for authenticated mesh members (off by default). Relays
        /// forward only end-to-end encrypted packets, within per-client
        /// limits shown by `status`. Every node uses the relays among its
        /// peers whether or not it relays itself.
        #[arg(long)]
        relay: bool,
        /// This node's known public address (HOST:PORT, e.g. a host with a
        /// public IP or a static port forward): pins the NAT type to open
        /// with this reflexive address and skips classification.
        #[arg(long, value_name = "ADDR")]
        public_addr: Option<String>,
        /// Turn NAT traversal off: no NAT classification, no introductions,
        /// no hole punching; relayed connections stay relayed. On by
        /// default.
        #[arg(long, conflicts_with = "public_addr")]
        no_traversal: bool,
        /// Turn port mapping off: do not ask the default gateway (PCP,
        /// NAT-PMP, UPnP-IGD) to forward our UDP port. On by default; the
        /// mapped address becomes a traversal candidate.
        #[arg(long)]
        no_port_map: bool,
        /// Port-mapping protocols to try, in order (comma-separated subset
        /// of pcp, nat-pmp, upnp-igd). Default: pcp,nat-pmp,upnp-igd.
        #[arg(long, value_name = "LIST", conflicts_with = "no_port_map",
              value_parser = crate::port_map_view::parse_protocols)]
        port_map_protocols: Option<crate::port_map_view::ProtocolList>,
        /// Turn birthday-paradox probing off. When one side of a punch is
        /// behind a symmetric NAT and the other behind a cone, the
        /// symmetric side opens up to 256 extra UDP ports and the cone side
        /// sends up to 2048 probes to random ports, at most 200 packets/s
        /// and for at most 13 s per attempt. On by default.
        #[arg(long)]
        no_birthday: bool,
        /// Serve read-only HTTP (GET /metrics, /status, /healthz) on this TCP
        /// address; off unless given. Suggested: 127.0.0.1:9742. Loopback
        /// only, unless --http-allow-remote and --http-token-file are given.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Allow --http on a non-loopback address (requires --http-token-file).
        #[arg(long, requires = "http")]
        http_allow_remote: bool,
        /// File holding the bearer token every HTTP request must carry
        /// (at least 16 bytes, mode 0600); only its SHA-256 digest is kept.
        #[arg(long, value_name = "FILE", requires = "http")]
        http_token_file: Option<std::path::PathBuf>,
        /// Serve the built-in nRPC `echo` service (methods echo, stream,
        /// wait), registered in the ledger; for tests and benchmarks.
        #[arg(long)]
        serve_echo: bool,
        /// Worker threads (default: one per core). With 1, every task runs
        /// on one thread: no wake-up crosses threads, so a call or message
        /// on an idle machine takes a fraction of the time, and the node
        /// uses at most one core.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: Option<u16>,
    },
    /// Show the running node's peers.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the running node's view of the network: NAT type, the address
    /// each observing peer sees it at, and the RTT to each relay.
    Netcheck {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List every member the running node's ledger knows (from their
    /// announcements): addresses, NAT type, relay offer, last seen, and
    /// whether it is connected now.
    Members {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the running node's ledger entries (oldest first), or check it
    /// with `ledger verify`.
    #[command(args_conflicts_with_subcommands = true)]
    Ledger {
        /// `verify`: re-check every signature and chain, list forks; exits
        /// nonzero on a problem.
        #[command(subcommand)]
        action: Option<LedgerAction>,
        /// Only entries of this origin (a NodeId).
        #[arg(long, value_name = "ID")]
        origin: Option<String>,
        /// Only entries of this kind (node-announcement, relay-session,
        /// traversal-outcome, channel-registration, service-registration,
        /// token-revocation).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only entries after this cursor (from an earlier listing).
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        /// At most N entries (default: all).
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Keep printing new entries as they arrive (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ping a peer through the running node.
    Ping {
        /// The peer's NodeId.
        #[arg(value_name = "NODEID")]
        node_id: String,
        /// Number of pings (1-1000).
        #[arg(short = 'c', long = "count", value_name = "N", default_value_t = 3,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
        /// Milliseconds between pings (0-60000).
        #[arg(short = 'i', long = "interval-ms", value_name = "MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(0..=60_000))]
        interval_ms: u64,
        /// Milliseconds to wait for each pong (1-60000).
        #[arg(short = 'W', long = "timeout-ms", value_name = "MS", default_value_t = 5000,
              value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
        /// Ping until a pong comes over a direct path (exit 0), or fail with
        /// `kind: detail` after --timeout seconds. Ignores -c.
        #[arg(long, conflicts_with = "count")]
        until_direct: bool,
        /// Seconds --until-direct waits for a direct path (1-3600).
        #[arg(long, value_name = "SECS", requires = "until_direct",
              default_value_t = crate::until_direct::DEFAULT_TIMEOUT_SECS,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Create, remove or list pub/sub channels.
    Channel {
        /// What to do.
        #[command(subcommand)]
        action: crate::channel_cmd::ChannelAction,
    },
    /// Subscribe to a channel and print each message as it arrives.
    Sub(crate::channel_cmd::SubArgs),
    /// Publish to a channel; prints `delivered N/M` (or a summary for stdin).
    Pub(crate::channel_cmd::PubArgs),
    /// Permission tokens: issue, delegate, inspect, verify, revoke
    /// (docs/TOKENS.md).
    Token {
        /// What to do.
        #[command(subcommand)]
        action: crate::token_cmd_args::TokenAction,
    },
    /// List nRPC services mesh-wide (from the ledger's registrations):
    /// name, nodes, methods, and whether each node's path is direct or
    /// relayed.
    Services(crate::rpc_cmd::ServicesArgs),
    /// Call an nRPC service through the running node: SERVICE.METHOD [BODY | -].
    Call(crate::rpc_cmd::CallArgs),
    /// Load generators run by the running node (`bench rpc`).
    Bench {
        /// What to load.
        #[command(subcommand)]
        target: crate::rpc_cmd::BenchTarget,
    },
}

/// `relay-node ledger` sub-commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum LedgerAction {
    /// Re-check every signature and hash chain, report forks; exit nonzero
    /// on any problem.
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ping_count_bounds() {
        let id = "a".repeat(52);
        assert!(Cli::try_parse_from(["relay-node", "ping", &id, "-c", "0"]).is_err());
        assert!(Cli::try_parse_from(["relay-node", "ping", &id, "-c", "x"]).is_err());
        let cli = Cli::try_parse_from(["relay-node", "ping", &id]).unwrap();
        assert!(matches!(cli.command, Command::Ping { count: 3, .. }));
    }

    #[test]
    fn run_threads_bounds() {
        for bad in ["0", "1025", "x"] {
            assert!(Cli::try_parse_from(["relay-node", "run", "--threads", bad]).is_err());
        }
        let cli = Cli::try_parse_from(["relay-node", "run", "--threads", "1"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                threads: Some(1),
                ..
            }
        ));
    }

    #[test]
    fn sub_window_bounds() {
        for bad in ["0", "65537", "x"] {
            assert!(Cli::try_parse_from(["relay-node", "sub", "news", "--window", bad]).is_err());
        }
        let window = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Sub(a) => a.window,
            _ => unreachable!(),
        };
        assert_eq!(window(&["relay-node", "sub", "news"]), 4096);
        assert_eq!(window(&["relay-node", "sub", "news", "--window", "8"]), 8);
    }

    #[test]
    fn operator_flags() {
        let id = "a".repeat(52);
        let cli = Cli::try_parse_from(["relay-node", "ping", &id, "--until-direct"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ping {
                until_direct: true,
                timeout: 15,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["relay-node", "ping", &id, "--timeout", "3"]).is_err());
        assert!(
            Cli::try_parse_from(["relay-node", "ping", &id, "--until-direct", "-c", "2"]).is_err()
        );
        assert!(Cli::try_parse_from(["relay-node", "run", "--http-allow-remote"]).is_err());
        let cli = Cli::try_parse_from(["relay-node", "run", "--http", "127.0.0.1:0"]).unwrap();
        assert!(matches!(cli.command, Command::Run { http: Some(_), .. }));
        let cli = Cli::try_parse_from(["relay-node", "run", "--public-addr", "203.0.113.5:4433"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                public_addr: Some(_),
                ..
            }
        ));
        let cli =
            Cli::try_parse_from(["relay-node", "run", "--port-map-protocols", "nat-pmp"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                port_map_protocols: Some(_),
                ..
            }
        ));
        assert!(Cli::try_parse_from(["relay-node", "run", "--port-map-protocols", "x"]).is_err());
        let cli = Cli::try_parse_from(["relay-node", "run", "--no-port-map"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                no_port_map: true,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["relay-node", "run", "--no-birthday"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                no_birthday: true,
                no_traversal: false,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["relay-node", "netcheck", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Netcheck { json: true }));
    }

    #[test]
    fn invite_help_says_secret() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("invite")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("SECRET"));
    }
}
