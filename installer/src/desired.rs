//! Files as they should be: compared first, written atomically with an explicit mode, the
//! same way by every step and by the manifests.

use crate::error::Result;
use crate::host::Host;
use crate::report::Change;

/// Desired files, compared and written the same way by every step. Serialized (in a plan) as
/// its path, mode and size: the content may be a secret.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct DesiredFile {
    /// Absolute host path (before the host root is applied).
    pub path: String,
    #[serde(rename = "bytes", serialize_with = "length")]
    pub content: Vec<u8>,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
}

/// Its path, mode and size: the content may be a secret.
impl std::fmt::Debug for DesiredFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("bytes", &self.content.len())
            .finish()
    }
}

impl DesiredFile {
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        DesiredFile {
            path: path.into(),
            content: content.into(),
            mode,
        }
    }

    /// The change needed to put this file in place, if any: also when a killed run left a
    /// temp file of it behind.
    pub fn plan(&self, host: &Host) -> Result<Option<Change>> {
        use crate::host::FileState;
        let path = host.path(&self.path);
        let why = match host.fs().compare(&path, &self.content, self.mode)? {
            FileState::Same if host.fs().stale_temps_of(&path).is_empty() => return Ok(None),
            FileState::Same => "a killed run left a temp file of it".to_string(),
            FileState::Missing => "missing".to_string(),
            FileState::Differs => "content differs".to_string(),
            FileState::ModeDiffers { found } => format!("mode {found:04o}, want {:04o}", self.mode),
        };
        Ok(Some(Change::new(format!("write {}", self.path), why)))
    }

    /// Writes the file unless it is in place, then removes temp files of killed runs.
    pub fn write(&self, host: &Host) -> Result<bool> {
        let path = host.path(&self.path);
        let changed = host.fs().write_atomic(&path, &self.content, self.mode)?;
        for stale in host.fs().stale_temps_of(&path) {
            host.fs().remove_file(&stale)?;
        }
        Ok(changed)
    }
}

fn length<S: serde::Serializer>(content: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(content.len() as u64)
}

/// A mode as people write it: `"0600"`.
pub fn octal<S: serde::Serializer>(mode: &u32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{mode:04o}"))
}
