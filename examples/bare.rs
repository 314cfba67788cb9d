//! A bare tiny_http server answering `ok`, for `make bench` to measure
//! exechealthz's throughput against: same crate, same worker count, nothing
//! in front. Usage: bare PORT
use std::sync::Arc;

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: bare PORT");
    let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).expect("bind"));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let _ = request.respond(tiny_http::Response::from_string("ok"));
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}
