//! pea-shim: see the README for what is implemented so far.
