//! What a probe is: the command (or built-in check) it runs and the URL that
//! serves its result. Plain data shared by config, probe and results; it
//! parses nothing and runs nothing.

/// Paths the server answers itself; no `--url` may take one.
pub const RESERVED_PATHS: &[&str] = &["/", "/quit", "/metrics", "/status"];

/// One command and the URL that serves its result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub url: String,
    /// As the user wrote it: for messages, labels and the index page.
    pub cmd: String,
    pub action: Action,
}

/// What a probe does each period.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run `program` with `args` (by default `/bin/sh -c CMD`).
    Exec { program: String, args: Vec<String> },
    /// A built-in check, for a `--cmd` written as a URL.
    Check(crate::check::Check),
}

impl ProbeSpec {
    /// This probe's own timing, from its check URL's options (`#period=`,
    /// `#timeout=`, thresholds); a command has none of its own.
    pub fn timing(&self) -> crate::check::Timing {
        match &self.action {
            Action::Check(check) => check.options.timing,
            Action::Exec { .. } => crate::check::Timing::default(),
        }
    }
}
