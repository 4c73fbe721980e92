//! Thin binary edge of pea-runtime.

fn main() -> std::process::ExitCode {
    eprintln!("pea-runtime: not implemented yet (see README: what works)");
    std::process::ExitCode::from(2)
}
