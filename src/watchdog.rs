//! The latency watchdog: notices probes whose newest result has grown older
//! than `--latency` (typically a command that hangs) and says so in the log,
//! once per stale spell.
//!
//! It only reports: the HTTP answer turns 503 by itself when a result is too
//! old, and hung commands are killed by their own probe's `--timeout`.

use std::time::{Duration, Instant};

use crate::duration::format;
use crate::log::{self, Level, Value};
use crate::results::Probe;

pub fn watch_forever(probes: &[Probe], latency: Duration) -> ! {
    // Often enough to report within a tenth of the latency, rarely enough
    // to cost nothing.
    let tick = (latency / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        std::thread::sleep(tick);
        let now = Instant::now();
        for probe in probes {
            let Some(stale) = probe.newly_stale(now, latency) else {
                continue;
            };
            let running = match stale.running_for {
                Some(running) => format!("its command has been running for {}", format(running)),
                None => "no command is running".to_string(),
            };
            log::event(
                Level::Error,
                format_args!(
                    "probe {}: no result for {} (--latency {}); {running}; answering 503",
                    probe.spec.url,
                    format(stale.age),
                    format(latency)
                ),
                &[
                    ("url", Value::Str(&probe.spec.url)),
                    (
                        "age_seconds",
                        Value::Num(crate::duration::seconds(stale.age)),
                    ),
                ],
            );
        }
    }
}
