//! Thin binary edge of pea-kubelet.

fn main() -> std::process::ExitCode {
    eprintln!("pea-kubelet: not implemented yet (see README: what works)");
    std::process::ExitCode::from(2)
}
