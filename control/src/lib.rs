//! pea-control: see the README for what is implemented so far.
