//! Python's `log_to_stderr` / `get_logger`, on the standard `log` facade.
//!
//! Lines look like `[INFO/Process-1] process exiting with exitcode 0`. The
//! runtime reports its own events (child start and exit, joins, terminations)
//! under the target `mproc`; because they go through `log`, an application
//! that installs another logger receives them there instead.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use log::{Level, LevelFilter};

use crate::process::current;
use crate::sys;

/// mproc's logger: writes `[LEVEL/ProcessName] message` lines to stderr.
#[derive(Debug)]
pub struct Logger {
    level: AtomicUsize,
}

static LOGGER: Logger = Logger {
    level: AtomicUsize::new(0),
};

/// Whether `log_to_stderr` installed our logger in this process.
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn filter_from(n: usize) -> LevelFilter {
    match n {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

impl Logger {
    /// Sets the most verbose level that is printed.
    pub fn set_level(&self, level: LevelFilter) {
        self.level.store(level as usize, Ordering::Relaxed);
        if *INSTALLED.get().unwrap_or(&false) {
            log::set_max_level(level);
        }
    }

    /// The most verbose level that is printed.
    pub fn level(&self) -> LevelFilter {
        filter_from(self.level.load(Ordering::Relaxed))
    }

    /// Logs `message` at `level` through the `log` facade (target `mproc`).
    pub fn log(&self, level: Level, message: &str) {
        log::log!(target: "mproc", level, "{message}");
    }

    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Logs at warning level.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Logs at error level.
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let name = current::info();
        let line = format!(
            "[{}/{}] {}\n",
            level_name(record.level()),
            name.me.name,
            record.args()
        );
        // One write(2) per line: lines from different processes never
        // interleave, and no lock is taken (safe in a forked child).
        sys::write_stderr(line.as_bytes());
    }

    fn flush(&self) {}
}

fn install() -> bool {
    *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok())
}

/// Python's `multiprocessing.log_to_stderr(level)`: prints the runtime's and
/// the program's log records to stderr as `[LEVEL/ProcessName] message`, in
/// this process and in every child started afterwards.
///
/// If another logger is already installed, records keep going there and
/// only the level is changed.
///
/// # Examples
/// ```
/// let logger = mproc::log_to_stderr(mproc::LevelFilter::Info);
/// assert_eq!(logger.level(), mproc::LevelFilter::Info);
/// logger.info("hello from the main process"); // [INFO/MainProcess] hello ...
/// ```
pub fn log_to_stderr(level: LevelFilter) -> &'static Logger {
    install();
    LOGGER.set_level(level);
    log::set_max_level(level);
    &LOGGER
}

/// Python's `multiprocessing.get_logger()`: mproc's logger, printing nothing
/// until [`log_to_stderr`] (or [`Logger::set_level`] after it) is called.
pub fn get_logger() -> &'static Logger {
    &LOGGER
}

/// The level children should log at, if `log_to_stderr` was called here.
pub(crate) fn level_for_children() -> Option<usize> {
    if *INSTALLED.get().unwrap_or(&false) {
        Some(LOGGER.level.load(Ordering::Relaxed))
    } else {
        None
    }
}

/// In a new child: log as the parent asked.
pub(crate) fn enable_in_child(level: usize) {
    log_to_stderr(filter_from(level));
}
