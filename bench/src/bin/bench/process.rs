//! Child processes of the driver: spawned by the end-to-end harness's process module with
//! their stderr in a log file and their stdout read line by line, waited for by a line they
//! print, killed on drop.
//!
//! This module knows nothing about what the children are; `stack.rs` does.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use anyhow::{bail, Context as _};
use openim_gateway_tests::process::{self as child, NoLine, OutputLog, StderrTo};
use tokio::sync::mpsc::UnboundedReceiver;

/// A running child, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Guard {
    name: String,
    child: Child,
    /// Lines of stdout, as the reader thread reads them.
    lines: UnboundedReceiver<String>,
    /// Every stdout line received so far.
    stdout: OutputLog,
    log: PathBuf,
}

impl Guard {
    /// Spawns `command`; its stderr goes to `{log_dir}/{name}.log` (appended, so a restarted
    /// process keeps one log).
    pub(crate) fn spawn(name: &str, mut command: Command, log_dir: &Path) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let program = command.get_program().to_string_lossy().into_owned();
        let stdout = OutputLog::default();
        let spawned = child::spawn_with(&mut command, stdout.clone(), StderrTo::File(stderr))
            .with_context(|| format!("cannot start {name} ({program})"))?;
        Ok(Self {
            name: name.to_owned(),
            child: spawned.child,
            lines: spawned.stdout_lines,
            stdout,
            log,
        })
    }

    /// The name it was started under (its log file's name).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line containing `marker` and returns it.
    pub(crate) fn wait_for_line(
        &mut self,
        marker: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        match child::wait_for_line_blocking(&mut self.lines, timeout, |line| line.contains(marker))
        {
            Ok(line) => Ok(line),
            Err(NoLine::Timeout) => bail!(
                "{} did not print {marker:?} within {timeout:?}; see {}",
                self.name,
                self.log.display()
            ),
            Err(NoLine::Closed) => {
                let status = self.exit_status();
                bail!(
                    "{} exited before printing {marker:?} ({status}); see {}",
                    self.name,
                    self.log.display()
                )
            }
        }
    }

    /// Waits for the child to exit on its own and returns all of its stdout.
    pub(crate) fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<String> {
        if child::wait_for_line_blocking(&mut self.lines, timeout, |_| false)
            == Err(NoLine::Timeout)
        {
            bail!(
                "{} still running after {timeout:?}; see {}",
                self.name,
                self.log.display()
            );
        }
        let status = self.child.wait().context("cannot wait for a child")?;
        if !status.success() {
            bail!(
                "{} failed ({status}); see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(self.stdout.lines().join("\n"))
    }

    /// Whether the child has exited.
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            _ => "still running".to_owned(),
        }
    }

    /// Kills the child now (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        child::kill(&mut self.child);
    }

    /// The resident set size, from `/proc/<pid>/status` (`VmRSS`), in KiB.
    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in {path}"))
    }

    /// CPU time used so far (user + system), in clock ticks, from `/proc/<pid>/stat`.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        crate::machine::process_cpu_ticks(self.pid()).unwrap_or_default()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}
