//! The HTTP side: one listening socket (`listen`), a few event loops that
//! share it (`front`), each driving its connections' state machines
//! (`conn`) over heads read within limits (`head`), and answering each
//! request from the shared results on the spot (`routes`), with responses
//! serialized by tiny_http.
//!
//! Nothing else listens: no internal socket, no second port. This side
//! reads results and process state; nothing below it imports it.

mod conn;
mod front;
mod head;
mod listen;
mod routes;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::SystemTime;

pub use conn::Timeouts;
pub use listen::bind;

use crate::metrics::RequestCounts;
use crate::process::Children;
use crate::results::{Policy, Probe};

/// Event loops sharing the listener. Measured with `make bench` on the
/// 2-core machine (wrk, 50 keep-alive connections): one loop 100k to 130k
/// req/s at 0.8 of a core, p99 4.1 ms with wrk's two threads (one
/// scheduler tick: server and client want more than the two cores) and
/// 0.64 ms with one; two loops 110k to 150k req/s but p99 3.7 to 7.6 ms,
/// a thread more and more memory. A health endpoint needs latency, not
/// 150k req/s: one. More loops work as they are (EPOLLEXCLUSIVE).
const LOOPS: usize = 1;

/// What every loop reads to answer.
pub struct Shared {
    pub probes: Arc<Vec<Probe>>,
    pub children: Arc<Children>,
    pub policy: Policy,
    pub enable_quit: bool,
    pub started: SystemTime,
    pub requests: RequestCounts,
}

/// Starts the event loops on `listener`; returns the address it serves.
pub fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    timeouts: Timeouts,
) -> io::Result<SocketAddr> {
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let listener = Arc::new(listener);
    for i in 0..LOOPS {
        let front = front::Front::new(Arc::clone(&listener), Arc::clone(&shared), timeouts)?;
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .stack_size(crate::THREAD_STACK)
            .spawn(move || front.run())?;
    }
    Ok(address)
}
