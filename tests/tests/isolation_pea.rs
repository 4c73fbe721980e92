//! The isolation conformance suite against pea-runtime: every check must pass.

use pea_tests::conformance::run_suite;
use pea_tests::conformance::tools::{run_tool_cases, side_by_side};
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

/// The conformance part (configs `runc spec`, podman and the CRI generate, both
/// noNewPrivileges values, `pea_tests::conformance::tools`): pea-runtime passes every case runc
/// passes, and the cases that check the filter, capabilities and setuid all pass under
/// pea-runtime.
#[test]
fn pea_runtime_passes_every_tool_config_case_runc_passes() {
    require_root();
    require_program("gcc");
    require_program("runc");
    require_program("podman");
    require_program("conmon");
    let pea = run_tool_cases("pea-runtime", &pea_runtime_binary(), &[]);
    let runc = run_tool_cases("runc", &require_program("runc"), &[]);
    let table = side_by_side(&[pea.clone(), runc.clone()]);
    println!("{table}");
    for (p, r) in pea.results.iter().zip(&runc.results) {
        assert_eq!(p.name, r.name);
        if r.outcome.passed() {
            assert!(
                p.outcome.passed(),
                "{}: runc passes, pea-runtime: {:?}\n{table}",
                p.name,
                p.outcome
            );
        }
    }
    for p in &pea.results {
        if !pea_tests::conformance::tools::host_forbidden(p.name) {
            assert!(p.outcome.passed(), "{}: {:?}\n{table}", p.name, p.outcome);
        }
    }
}
