//! The `relay-node` binary: parse the command line, run it, print any error
//! as `error: kind: detail` and exit nonzero (2 for usage errors).
//!
//! Nothing here uses `eprintln!`: it panics when stderr is closed, which
//! would turn a clean exit status into 101.

use std::process::ExitCode;

use clap::Parser;
use relay_node::{app, cli::Cli, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    // Flushes the log queue when main returns (after the error line).
    let _log = logging::init();
    match app::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::stderr_line(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout with success; anything else is printed as
/// `error: usage: <clap's message>` followed by clap's usage hint.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let text = text.trim_start_matches("error: ");
    logging::stderr_line(&format!("error: usage: {}", text.trim_end()));
    ExitCode::from(2)
}
