//! The isolation conformance suite against pea-runtime: every check must pass.

use pea_tests::conformance::run_suite;
use pea_tests::privileged::{require_program, require_root};
use pea_tests::runtime_cli::pea_runtime_binary;

#[test]
fn pea_runtime_passes_the_isolation_suite() {
    require_root();
    require_program("gcc"); // builds the static syscall probe
    let report = run_suite("pea-runtime", &pea_runtime_binary(), &[]);
    println!("{}", report.table());
    assert_eq!(report.failures(), 0, "\n{}", report.table());
    assert!(report.results.len() >= 24);
}

#[test]
fn suite_reports_a_runtime_that_cannot_run_containers() {
    require_root();
    // `false` accepts any arguments and exits 1: every check must report the runtime error,
    // none may pass by accident.
    let report = run_suite("false", &require_program("false"), &[]);
    assert_eq!(
        report.failures(),
        report.results.len(),
        "\n{}",
        report.table()
    );
}
