//! exechealthz: runs shell commands on a period and serves each result over
//! HTTP, so the kubelet's HTTP liveness probe can check what only a command
//! can. A drop-in replacement for the Go exec-healthz sidecar.
//!
//! This file only wires the parts together; the parts are in the library
//! (`lib.rs`), where each module says what it does.

use exechealthz::config::{self, Config, Invocation};
use exechealthz::process::{self, Children};
use exechealthz::results::{Policy, Probe};
use exechealthz::{THREAD_STACK, check, duration, error, http, info, json, log, probe, watchdog};
use std::sync::Arc;
use std::thread;

/// The static build's allocator. musl's own (mallocng) kept what a long
/// mixed load freed: under `make soak` its RSS grew from 1 MB to 11 MB in
/// two minutes and stayed there, while the live heap never passed 0.4 MB
/// (heaptrack on the glibc build). dlmalloc reuses and coalesces freed
/// chunks and gives memory back: see the note on this in README.md.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Closed standard descriptors are filled before Rust's runtime looks at
/// them, so that no root without /dev/null aborts us before `main` (see
/// `process::fill_closed_standard_descriptors`). `.init_array` functions
/// run before `main` in every libc, static musl included.
#[used]
#[unsafe(link_section = ".init_array")]
static FILL_STANDARD_DESCRIPTORS: extern "C" fn() = process::fill_closed_standard_descriptors;

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // `exechealthz check TARGET...`: checks run once, nothing else started.
    if args.first().is_some_and(|first| first == "check") {
        std::process::exit(exechealthz::oneshot::main(&args[1..]));
    }
    let json_logs = config::wants_json_logs(&args);
    log::set_json(json_logs);
    // A panic aborts (see Cargo.toml); its message goes out as a log line.
    std::panic::set_hook(Box::new(|panic| {
        error!("panic: {panic}");
        log::flush(process::EXIT_FLUSH);
    }));
    let config = match config::parse(args) {
        Ok(Invocation::Run(config)) => config,
        Ok(Invocation::Help) => {
            return print_or_exit(&format!("{}\n{}", config::USAGE, check::TLS_USAGE));
        }
        Ok(Invocation::Version) => {
            let (version, features) = (env!("CARGO_PKG_VERSION"), check::FEATURES);
            return print_or_exit(&format!("exechealthz {version} (features: {features})\n"));
        }
        Err(e) => {
            // Text: a plain line, as Go's flag package prints its errors.
            if json_logs {
                error!("exechealthz: {e}; see 'exechealthz --help'");
            } else {
                eprintln!("exechealthz: {e}; see 'exechealthz --help'");
            }
            std::process::exit(2);
        }
    };
    if let Err(e) = run(config) {
        error!("{e}");
        log::flush(process::EXIT_FLUSH);
        std::process::exit(1);
    }
}

/// Writes `text` to stdout; a failed write (a full disk, a closed pipe) is
/// an error with exit status 1, not a panic.
fn print_or_exit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("exechealthz: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

fn run(config: Config) -> Result<(), String> {
    log::set_quiet(config.quiet);
    log::set_json(config.json_logs);
    process::reset_signal_state().map_err(|e| format!("cannot reset signal state: {e}"))?;
    // The first thread: from here on no log line can block a probe, a
    // request or an exit (see `log`).
    spawn("log", || log::write_forever())?;
    process::raise_open_files_limit();
    process::empty_stdin().map_err(|e| format!("cannot make stdin an empty pipe: {e}"))?;
    // Signals first: a SIGTERM from here on stops us cleanly.
    let signals = process::exit_signals().map_err(|e| format!("cannot handle signals: {e}"))?;
    let listener = http::bind(config.address, config.port).map_err(|e| {
        let address = config.address.map_or("[::]".to_string(), |a| a.to_string());
        format!("cannot listen on {address} port {}: {e}", config.port)
    })?;

    let children = Children::new();
    let probes: Arc<Vec<Probe>> = Arc::new(config.probes.iter().cloned().map(Probe::new).collect());
    let policy = Policy {
        failure_threshold: config.failure_threshold,
        success_threshold: config.success_threshold,
        latency: config.latency,
        output: config.output,
    };

    // From here on every way out kills the commands' groups first.
    let panicking = Arc::clone(&children);
    std::panic::set_hook(Box::new(move |panic| {
        error!("panic: {panic}");
        panicking.kill_all_now();
        log::flush(process::EXIT_FLUSH);
        // What the release profile does anyway (panic = "abort"), in every
        // build: a sidecar missing a thread must not go on serving.
        std::process::abort();
    }));
    let Err(e) = start(config, listener, signals, probes, &children, policy);
    error!("{e}");
    children.kill_all_and_exit(1)
}

/// Starts the threads, then dispatches HTTP events and watches for
/// signals on this one.
fn start(
    config: Config,
    listener: std::net::TcpListener,
    mut signals: process::Signals,
    probes: Arc<Vec<Probe>>,
    children: &Arc<Children>,
    policy: Policy,
) -> Result<std::convert::Infallible, String> {
    for warning in config.warnings() {
        error!("warning: {warning}");
    }

    let shared = http::Shared {
        probes: Arc::clone(&probes),
        children: Arc::clone(children),
        policy,
        enable_quit: config.enable_quit,
        requests: Default::default(),
    };
    let timeouts = http::Timeouts {
        head: config.head_timeout,
        idle: config.idle_timeout,
        write: config.write_timeout,
    };
    // Before the event loop starts accepting: it would take descriptors too.
    process::check_descriptors(probes.len())?;
    // Clients get what the probes' runs leave: a probe never fails to
    // start its command for want of a descriptor because of them.
    let connections = process::connection_cap(probes.len());
    info!("serving at most {connections} client connections at once");
    let (address, front) = http::start(listener, Arc::new(shared), timeouts, connections)
        .map_err(|e| format!("cannot start the HTTP server: {}", process::spawn_error(&e)))?;
    log::always(
        format_args!(
            "exechealthz {} listening on {address}",
            env!("CARGO_PKG_VERSION")
        ),
        &[("address", log::Value::Str(&address.to_string()))],
    );

    // Every probe thread is created before any runs its command: with
    // hundreds of probes, spawns under way slowed the creation of the
    // threads still to come (both take the address space's lock), and the
    // last probes started seconds late.
    let gate = Arc::new(std::sync::Barrier::new(config.probes.len() + 1));
    for (i, spec) in config.probes.iter().enumerate() {
        let schedule = probe::Schedule {
            period: config.period_for(spec),
            timeout: config.timeout_for(spec),
            max_output: config.max_output,
        };
        info!(
            "probe {}: running {} every {} (timeout {})",
            spec.url,
            json::string(&spec.cmd),
            duration::format(schedule.period),
            duration::format(schedule.timeout)
        );
        let probes = Arc::clone(&probes);
        let children = Arc::clone(children);
        let gate = Arc::clone(&gate);
        let offset = probe::first_run_offset(i, config.probes.len(), schedule.period);
        spawn(&format!("probe-{i}"), move || {
            gate.wait();
            probe::run_forever(&probes[i], &children, schedule, policy, offset)
        })?;
    }
    gate.wait();
    let watched = Arc::clone(&probes);
    let latency = config.latency;
    spawn("watchdog", move || {
        watchdog::watch_forever(&watched, latency)
    })?;

    // This thread dispatches HTTP events and watches for signals, until a
    // signal or /quit ends the process.
    let children = Arc::clone(children);
    let fds = signals.fds();
    front.run(&fds, move || signals.handle(&children))
}

/// A thread of the server's that runs until the process ends.
fn spawn(
    name: &str,
    body: impl FnOnce() -> std::convert::Infallible + Send + 'static,
) -> Result<(), String> {
    spawn_boxed(name, Box::new(body))
}

/// `spawn`'s work, not generic: std's thread start is one copy, not one
/// per caller.
fn spawn_boxed(
    name: &str,
    body: Box<dyn FnOnce() -> std::convert::Infallible + Send>,
) -> Result<(), String> {
    thread::Builder::new()
        .name(name.to_string())
        .stack_size(THREAD_STACK)
        .spawn(move || match body() {})
        .map(drop)
        .map_err(|e| format!("cannot start thread {name}: {}", process::spawn_error(&e)))
}
