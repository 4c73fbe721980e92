//! Thin binary edge of pea-cni.

fn main() -> std::process::ExitCode {
    eprintln!("pea-cni: not implemented yet (see README: what works)");
    std::process::ExitCode::from(2)
}
