//! The HTTP side: one listening socket (`listen`), an event loop whose
//! dispatcher hands ready connections to a few workers (`front`), each
//! driving its connections' state machines (`conn`) over heads read within
//! limits (`head`), and answering each request from the shared results on
//! the spot (`routes`), with responses serialized by tiny_http.
//!
//! Nothing else listens: no internal socket, no second port. This side
//! reads results and process state; nothing below it imports it.

pub(crate) mod conn;
mod front;
pub(crate) mod head;
mod listen;
pub(crate) mod routes;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

pub use conn::Timeouts;
pub use front::Front;
pub use listen::bind;

use crate::metrics::RequestCounts;
use crate::process::Children;
use crate::results::{Policy, Probe};

/// Workers that answer, beside the dispatcher. Measured with `make bench`
/// on the 2-core machine (wrk, 2 threads, 50 keep-alive connections): one
/// loop doing everything 58k to 68k req/s at p99 3.1 to 4.5 ms (a client
/// thread sharing a core with the busy loop waits up to a tick); the
/// dispatcher with three workers as fast at p99 1.6 to 2.9 ms. In C, two
/// workers gave p99 1.9 to 3.1 ms, three 1.1 to 1.9, four 1.6 to 3.0 (see
/// docs/http-front.md). With the dispatcher on the main thread, three make
/// 7 threads with one probe.
const WORKERS: usize = 3;

/// What every worker reads to answer.
pub struct Shared {
    pub probes: Arc<Vec<Probe>>,
    pub children: Arc<Children>,
    pub policy: Policy,
    pub enable_quit: bool,
    pub requests: RequestCounts,
}

/// Starts the workers on `listener`, to serve at most `connections`
/// clients at once; returns the address it serves and the dispatcher, for
/// the caller's thread to run (`Front::run`).
pub fn start(
    listener: TcpListener,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    connections: usize,
) -> io::Result<(SocketAddr, Front)> {
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let front = Front::new(listener, shared, timeouts, WORKERS, connections)?;
    Ok((address, front))
}
