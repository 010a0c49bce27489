//! Settings: what `install` was given (flags, `FOREMAN_BOX_*` variables, another `--config`
//! file) is kept in /etc/foreman-box/config.toml, so that every later command needs no flags,
//! as k3s keeps its config.yaml. Defaults are not written; a person's own lines stay as they are.

use crate::action::{HostOp, Planned};
use crate::config::{self, DEFAULT_CONFIG_PATH};
use crate::context::Context;
use crate::desired::DesiredFile;
use crate::error::Result;

/// The mode of a kept file made here: it holds no secret (passwords never come from flags).
const MODE: u32 = 0o644;

/// The write of config.toml, when what was given differs from what it keeps.
pub(super) fn plan(cx: &Context) -> Result<Vec<Planned<HostOp>>> {
    let path = cx.host.path(DEFAULT_CONFIG_PATH);
    let fs = cx.host.fs();
    let current = fs.read_string(&path)?;
    let Some((text, changed)) = config::remembered(current.as_deref(), &path, &cx.config.given)?
    else {
        return Ok(Vec::new());
    };
    // A file of the person's own keeps its mode (load_config refused an unsafe one).
    let mode = fs.mode(&path)?.map_or(MODE, |m| m & 0o7777);
    let why = format!("remember {} for later runs", changed.join(", "));
    Ok(vec![Planned::new(
        HostOp::Write(DesiredFile::new(DEFAULT_CONFIG_PATH, text, mode)),
        why,
    )])
}
