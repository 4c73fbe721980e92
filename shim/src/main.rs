//! Thin binary edge of pea-shim.

fn main() -> std::process::ExitCode {
    eprintln!("pea-shim: not implemented yet (see README: what works)");
    std::process::ExitCode::from(2)
}
