//! Thin binary edge of pea-runtime: parse, set up logging, run the verb, map errors to exit 1.

use clap::Parser;
use pea_runtime::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = pea_runtime::logging::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        eprintln!("pea-runtime: opening log file: {e}");
        return std::process::ExitCode::from(1);
    }
    match pea_runtime::commands::dispatch(&cli.global, cli.command) {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = pea_runtime::error::chain(&e);
            if cli.global.log.is_some() {
                tracing::error!("{msg}");
            }
            eprintln!("pea-runtime: {msg}");
            std::process::ExitCode::from(1)
        }
    }
}
