//! pea-kubelet: see the README for what is implemented so far.
