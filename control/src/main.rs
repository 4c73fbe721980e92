//! Thin binary edge of pea-control.

fn main() -> std::process::ExitCode {
    eprintln!("pea-control: not implemented yet (see README: what works)");
    std::process::ExitCode::from(2)
}
