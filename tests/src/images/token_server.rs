//! Token server (below).
