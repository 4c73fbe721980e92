//! Thin binary edge of pea-monitor: parse the command line, run, report a failure once.

use std::process::ExitCode;

use pea_monitor::{Config, MonitorError, Reporter};

fn main() -> ExitCode {
    let mut report = Reporter::default();
    let result = Config::parse(std::env::args_os().skip(1))
        .and_then(|c| {
            c.absolute()
                .map_err(|e| MonitorError::Usage(format!("resolving paths: {e}")))
        })
        .and_then(|c| pea_monitor::run(&c, &mut report));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string();
            report.error(&msg);
            pea_monitor::log::warn(&msg);
            ExitCode::from(1)
        }
    }
}
