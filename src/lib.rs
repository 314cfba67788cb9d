//! exechealthz's parts, as a library so that the fuzz targets (`fuzz/`)
//! can drive the parsers and the connection state machine directly; the
//! binary (`main.rs`) wires them together. Not a public API: nothing here
//! is stable.
//!
//! `config` (flags), `spec` (what a probe is), `probe` (running commands),
//! `check` (built-in checks), `outcome` (how a run ended), `results` (their
//! state), `watchdog` (staleness), `status` and `metrics` (reports), `http`
//! (serving), `process` (children, signals, PID 1), `log`, `duration` and
//! `json` (formats), `words` (shell-like splitting), `musl` (two libc
//! functions made smaller, in the static build); `oneshot` is
//! `exechealthz check`, the built-in checks run once.

pub mod check;
pub mod config;
pub mod duration;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod json;
pub mod log;
pub mod metrics;
pub mod musl;
pub mod oneshot;
pub mod outcome;
pub mod probe;
pub mod process;
pub mod results;
pub mod spec;
pub mod status;
pub mod watchdog;
pub mod words;

/// Our own threads do little and keep no large buffers on their stacks.
/// A TLS handshake (rustls) takes more: the TLS build gives 256 KiB, and
/// 1 MiB unoptimized (tests), where rustls's frames are larger. Only the
/// pages a thread touches are memory.
pub const THREAD_STACK: usize = if cfg!(all(feature = "tls", debug_assertions)) {
    1024 * 1024
} else if cfg!(feature = "tls") {
    256 * 1024
} else {
    128 * 1024
};
