//! The tcp:// check: a TCP connection to HOST:PORT opens within the
//! deadline. It sends nothing, and closes at once.

use std::time::Instant;

use super::{Failure, connect};

pub(super) fn run(host: &str, port: u16, deadline: Instant) -> Result<String, Failure> {
    connect(host, port, deadline).map(|(_, addr)| format!("connected to {addr}"))
}
