//! What a step may look at ([`Context`], passed explicitly, never global).

use crate::config::Config;
use crate::download::Downloader;
use crate::facts::Facts;
use crate::host::Host;
use crate::report::{LogReporter, Reporter};
use crate::secret::Secret;
use std::sync::Arc;

/// What a run may do beyond what the configuration says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write everything, start nothing (like k3s's INSTALL_K3S_SKIP_START).
    pub skip_start: bool,
    /// Preflight checks whose failure is only a warning; `all` for every one.
    pub ignore_preflight: Vec<String>,
}

/// Everything a step may look at: passed explicitly, never global.
pub struct Context {
    pub host: Host,
    pub facts: Facts,
    pub config: Config,
    pub options: RunOptions,
    pub downloader: Downloader,
    /// The external PostgreSQL admin password (from a file or FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD).
    pub postgres_admin_password: Option<Secret>,
    /// The offline bundle, every byte verified before any step ran: k3s and the images come
    /// from it instead of the network.
    pub bundle: Option<Arc<foreman_box_bundle::archive::Bundle>>,
    /// Where steps tell what they are doing (warnings, skips, progress, the wait's live view).
    pub reporter: Arc<dyn Reporter>,
}

impl Context {
    pub fn new(
        host: Host,
        facts: Facts,
        config: Config,
        options: RunOptions,
        postgres_admin_password: Option<Secret>,
    ) -> Self {
        let downloader = Downloader::new(&config.downloads);
        Context {
            host,
            facts,
            config,
            options,
            downloader,
            postgres_admin_password,
            bundle: None,
            reporter: Arc::new(LogReporter),
        }
    }

    /// The same context, installing from a verified bundle.
    pub fn with_bundle(mut self, bundle: Arc<foreman_box_bundle::archive::Bundle>) -> Self {
        self.bundle = Some(bundle);
        self
    }

    /// The same context, telling a different reporter.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> Self {
        self.downloader = self.downloader.with_reporter(reporter.clone());
        self.reporter = reporter;
        self
    }
}
