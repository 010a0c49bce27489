//! What a step may look at ([`Context`], passed explicitly, never global) and what a plan is
//! made of ([`Action`]: a change and the work that makes it).

use crate::config::Config;
use crate::desired::DesiredFile;
use crate::download::Downloader;
use crate::error::Result;
use crate::facts::Facts;
use crate::host::Host;
use crate::report::{Change, LogReporter, Reporter};
use crate::secret::Secret;
use futures::future::BoxFuture;
use std::fmt;
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

/// The work of one action: runs once, against the context it was planned with.
pub type Work = Box<dyn for<'a> FnOnce(&'a Context) -> BoxFuture<'a, Result<()>> + Send>;

/// One planned change and the work that makes it. `plan` returns these; `apply` runs exactly
/// these. Everything the work needs was decided while planning and is captured in it.
pub struct Action {
    pub change: Change,
    work: Work,
}

impl Action {
    /// An action whose work is async.
    pub fn new<F>(what: impl Into<String>, why: impl Into<String>, work: F) -> Self
    where
        F: for<'a> FnOnce(&'a Context) -> BoxFuture<'a, Result<()>> + Send + 'static,
    {
        Action {
            change: Change::new(what, why),
            work: Box::new(work),
        }
    }

    /// An action whose work is a plain function of the context.
    pub fn sync<F>(what: impl Into<String>, why: impl Into<String>, work: F) -> Self
    where
        F: FnOnce(&Context) -> Result<()> + Send + 'static,
    {
        Action::new(what, why, move |cx| Box::pin(async move { work(cx) }))
    }

    /// Writes a file the way every step does (atomic, explicit mode, compared first).
    pub fn write_file(file: DesiredFile, why: impl Into<String>) -> Self {
        let what = format!("write {}", file.path);
        Action::sync(what, why, move |cx| file.write(&cx.host).map(|_| ()))
    }

    pub async fn run(self, cx: &Context) -> Result<()> {
        (self.work)(cx).await
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Action")
            .field("change", &self.change)
            .finish()
    }
}
