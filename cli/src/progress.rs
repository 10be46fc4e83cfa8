//! Progress on stderr: a spinner when stderr is a terminal, plain lines otherwise (logs, CI,
//! pipes), so machine-readable stdout is never decorated. Colour only on a terminal without
//! `NO_COLOR`.

use std::io::IsTerminal;
use std::time::Duration;

/// Whether stderr may carry colour and animation.
pub fn fancy() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: String,
}

impl Progress {
    pub fn new(what: &str) -> Progress {
        let bar = fancy().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(100));
            b.set_message(what.to_string());
            b
        });
        if bar.is_none() {
            eprintln!("{what}");
        }
        Progress {
            bar,
            last: String::new(),
        }
    }

    /// A new state; printed once as a line when there is no spinner.
    pub fn set(&mut self, state: &str) {
        if state == self.last {
            return;
        }
        self.last = state.to_string();
        match &self.bar {
            Some(b) => b.set_message(state.to_string()),
            None => eprintln!("  {state}"),
        }
    }

    pub fn finish(self, done: &str) {
        match self.bar {
            Some(b) => b.finish_with_message(done.to_string()),
            None => eprintln!("  {done}"),
        }
    }
}

/// `error:` in red on a terminal, plain otherwise.
pub fn error_prefix() -> &'static str {
    if fancy() {
        "\x1b[31merror:\x1b[0m"
    } else {
        "error:"
    }
}
