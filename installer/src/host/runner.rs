//! The one way to run a program: an argv, never a shell string; secrets only on stdin.

#![allow(clippy::disallowed_methods)] // host/ is where the machine is touched

use super::HostError;
use crate::secret::Secret;
#[cfg(test)]
use std::collections::VecDeque;
use std::io::Write;
use std::process::{Command, Stdio};
#[cfg(test)]
use std::sync::Mutex;

/// A command to run. `stdin` is a [`Secret`] so that it never reaches a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Option<Secret>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, input: Secret) -> Self {
        self.stdin = Some(input);
        self
    }

    /// The command as a person would type it (stdin is never shown).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

pub trait CommandRunner: Send + Sync {
    /// Runs the command and returns its output whatever its exit status.
    fn output(&self, cmd: &Cmd) -> Result<Output, HostError>;

    /// Runs the command and fails unless it exits 0.
    fn run(&self, cmd: &Cmd) -> Result<Output, HostError> {
        let out = self.output(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(HostError::Failed {
                command: cmd.display(),
                status: out.status,
                stderr: out.stderr.trim().chars().take(2000).collect(),
            })
        }
    }

    /// Whether `program` can be found on PATH.
    fn has_program(&self, program: &str) -> bool;
}

/// Runs commands on this machine.
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn output(&self, cmd: &Cmd) -> Result<Output, HostError> {
        let child = spawn(cmd, Stdio::piped(), Stdio::piped())?;
        let out = child.wait_with_output().map_err(spawn_err(cmd))?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn has_program(&self, program: &str) -> bool {
        let Some(path) = std::env::var_os("PATH") else {
            return false;
        };
        std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
    }
}

impl SystemRunner {
    /// Runs the command with this process's stdout and stderr, so its lines show as they come
    /// (a long script a person watches); returns its exit status.
    pub fn stream(&self, cmd: &Cmd) -> Result<i32, HostError> {
        let mut child = spawn(cmd, Stdio::inherit(), Stdio::inherit())?;
        Ok(child.wait().map_err(spawn_err(cmd))?.code().unwrap_or(-1))
    }
}

fn spawn_err(cmd: &Cmd) -> impl Fn(std::io::Error) -> HostError + '_ {
    move |source| HostError::Spawn {
        program: cmd.program.clone(),
        source,
    }
}

/// Starts the command with its standard input written (and closed) and the given outputs.
fn spawn(cmd: &Cmd, stdout: Stdio, stderr: Stdio) -> Result<std::process::Child, HostError> {
    tracing::debug!(command = %cmd.display(), "run");
    let mut child = Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(spawn_err(cmd))?;
    if let Some(input) = &cmd.stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.expose().as_bytes())
            .map_err(spawn_err(cmd))?;
    }
    Ok(child)
}

/// Records every command and answers from a script of canned outputs: the unit tests' runner,
/// compiled only into them. A command with no scripted answer succeeds with empty output.
#[cfg(test)]
#[derive(Default)]
pub struct RecordingRunner {
    calls: Mutex<Vec<Cmd>>,
    answers: Mutex<VecDeque<(String, Output)>>,
}

#[cfg(test)]
impl RecordingRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next command whose display starts with `prefix` gets `output`.
    pub fn answer(&self, prefix: &str, output: Output) {
        self.answers
            .lock()
            .unwrap()
            .push_back((prefix.to_string(), output));
    }

    pub fn calls(&self) -> Vec<Cmd> {
        self.calls.lock().unwrap().clone()
    }
}

#[cfg(test)]
impl CommandRunner for RecordingRunner {
    fn output(&self, cmd: &Cmd) -> Result<Output, HostError> {
        self.calls.lock().unwrap().push(cmd.clone());
        let display = cmd.display();
        let mut answers = self.answers.lock().unwrap();
        if let Some(i) = answers.iter().position(|(p, _)| display.starts_with(p)) {
            return Ok(answers.remove(i).expect("index is valid").1);
        }
        Ok(Output::default())
    }

    /// No program is installed on the recorded host.
    fn has_program(&self, _: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_delivered_but_never_displayed() {
        let cmd = Cmd::new("cat").stdin(Secret::new("hunter2"));
        assert_eq!(cmd.display(), "cat");
        assert!(!format!("{cmd:?}").contains("hunter2"));
        let out = SystemRunner.run(&cmd).unwrap();
        assert_eq!(out.stdout, "hunter2");
    }

    #[test]
    fn failing_command_names_itself_and_its_stderr() {
        let err = SystemRunner
            .run(&Cmd::new("sh").args(["-c", "echo nope >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited with status 3"), "{err}");
        assert!(err.contains("nope"), "{err}");
    }
}
