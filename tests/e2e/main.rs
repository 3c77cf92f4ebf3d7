//! End-to-end tests of the `firefly` binary: real processes, real files,
//! real sockets. One test binary with a module per area (see STYLE.md).
#![allow(clippy::unwrap_used)]

mod netns;
mod node;
mod scan;
mod util;
