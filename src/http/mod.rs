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

/// Event loops at most: one per core up to this. Two keep up with far more
/// than any kubelet asks, and keep the thread count low (one probe: main,
/// reaper, watchdog, the probe and these).
const MAX_LOOPS: usize = 2;

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
    let loops = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_LOOPS);
    for i in 0..loops {
        let front = front::Front::new(Arc::clone(&listener), Arc::clone(&shared), timeouts)?;
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .stack_size(crate::THREAD_STACK)
            .spawn(move || front.run())?;
    }
    Ok(address)
}
