//! pea-tests: what every test shares.
