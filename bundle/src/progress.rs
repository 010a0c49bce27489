//! How long work tells its progress: the CLI draws bars on a terminal and logs lines otherwise
//! (it adapts the installer's reporter); tests and library callers pass [`NoProgress`].

/// Starts one bar per piece of work (a blob, a member being written or checked).
pub trait Progress: Send + Sync {
    fn start(&self, what: &str, total: Option<u64>) -> Box<dyn Bar>;
}

/// One piece of work.
pub trait Bar: Send {
    /// `n` more bytes done (a resumed download first tells what it already had).
    fn advance(&mut self, n: u64);
    fn finish(&mut self);
}

/// Tells nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _what: &str, _total: Option<u64>) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
}

struct NoBar;

impl Bar for NoBar {
    fn advance(&mut self, _n: u64) {}
    fn finish(&mut self) {}
}
