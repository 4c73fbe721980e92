//! Integration test binary `images`: pea-images and the test fixtures' images and registry.
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod fixtures_images;
mod fixtures_registry;
mod images_auth;
mod images_cli;
mod images_gc;
mod images_gc_history;
mod images_hostile;
mod images_mirror;
mod images_pull;
mod images_resume;
