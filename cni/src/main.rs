//! pea-cni: the CNI plugin binary. Thin: reads the environment and stdin, runs the verb, prints
//! the result or the spec's error object on stdout.

use std::{io::Read, process::ExitCode};

fn main() -> ExitCode {
    // Logs go to stderr (stdout is the CNI protocol). PEA_CNI_LOG=debug|info|warn|error picks the
    // level; the default is warn. A plain level filter keeps start-up cheap (this process lives
    // for a few milliseconds).
    let level = std::env::var("PEA_CNI_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let vars = std::env::vars().collect();
    let mut stdin = Vec::new();
    let needs_stdin = std::env::var("CNI_COMMAND").is_ok_and(|c| c != "VERSION");
    // Bounded: a runaway or hostile writer must not make the plugin allocate without limit.
    let limit = pea_cni::cmd::MAX_STDIN;
    let read = std::io::stdin()
        .take(limit as u64 + 1)
        .read_to_end(&mut stdin);
    let fail = |code, msg: String| {
        let err = pea_cni::spec::CniError::new(code, msg, "");
        println!("{}", serde_json::to_string(&err).expect("serialises"));
        ExitCode::FAILURE
    };
    match read {
        Err(e) if needs_stdin => {
            return fail(
                pea_cni::spec::code::IO_FAILURE,
                format!("reading the network config from stdin: {e}"),
            )
        }
        Ok(n) if n > limit && needs_stdin => {
            return fail(
                pea_cni::spec::code::INVALID_CONFIG,
                format!("the network config on stdin is larger than {limit} bytes"),
            )
        }
        _ => {}
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
