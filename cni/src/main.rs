//! pea-cni: the CNI plugin binary. Thin: reads the environment and stdin, runs the verb, prints
//! the result or the spec's error object on stdout.

use std::{io::Read, process::ExitCode};

fn main() -> ExitCode {
    // Logs go to stderr (stdout is the CNI protocol); quiet unless PEA_CNI_LOG asks.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEA_CNI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let vars = std::env::vars().collect();
    let mut stdin = Vec::new();
    let needs_stdin = std::env::var("CNI_COMMAND").is_ok_and(|c| c != "VERSION");
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        if needs_stdin {
            let err = pea_cni::spec::CniError::new(
                pea_cni::spec::code::IO_FAILURE,
                format!("reading the network config from stdin: {e}"),
                "",
            );
            println!("{}", serde_json::to_string(&err).expect("serialises"));
            return ExitCode::FAILURE;
        }
    }
    match pea_cni::cmd::run(&vars, &stdin) {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", serde_json::to_string(&e).expect("serialises"));
            ExitCode::FAILURE
        }
    }
}
