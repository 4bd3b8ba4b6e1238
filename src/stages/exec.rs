//! `exec`: run an external command per item, with placeholders for the
//! item's paths; no shell unless asked. A command's output file appears
//! whole or not at all (it writes a temp file that is renamed on success).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BuildContext, Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::item::{Item, PayloadType, Types};

/// Options of `exec`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExecOptions {
    /// The program and its arguments, e.g. ["cjpeg", "-outfile", "{out}",
    /// "{path}"]. Placeholders: `{path}` (the source file), `{rel}` (its path
    /// relative to the scan root), `{stem}`, `{out}` (the output file, from
    /// `dir` and `filename`).
    pub command: Vec<String>,
    /// Run `command`'s single string with `sh -c` (placeholders are
    /// shell-quoted).
    pub shell: bool,
    /// Folder for `{out}`.
    pub dir: Option<String>,
    /// Name of `{out}` relative to `dir`, with the placeholders of `write`.
    pub filename: String,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            command: Vec::new(),
            shell: false,
            dir: None,
            filename: "{rel_dir}/{name}".into(),
        }
    }
}

impl StageOptions for ExecOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            errors.push(OptionError::at(
                "command",
                "`command` needs at least the program to run",
            ));
        }
        if self.shell && self.command.len() > 1 {
            errors.push(OptionError::at(
                "command",
                "with `shell = true`, `command` is one string for `sh -c`",
            ));
        }
        let uses_out = self.command.iter().any(|a| a.contains("{out}"));
        if uses_out && self.dir.is_none() {
            errors.push(OptionError::at(
                "command",
                "`{out}` needs `dir`, the folder outputs go to",
            ));
        }
        errors.extend(super::template::validate(&self.filename, "filename"));
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "exec",
        summary: "run an external command per item ({path}, {rel}, {stem}, {out}); non-zero exit fails the item",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(ExecOptions),
        check: super::check_options::<ExecOptions>,
        build: |t, ctx: &BuildContext| {
            let opts: ExecOptions = super::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Exec {
                dir: opts.dir.as_ref().map(PathBuf::from),
                opts,
                timeout: ctx.timeout,
                claims: ctx.claims.clone(),
            })))
        },
    }
}

struct Exec {
    opts: ExecOptions,
    dir: Option<PathBuf>,
    timeout: Option<Duration>,
    claims: super::Claims,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The last lines of a command's error output, for the failure message.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    let t = lines[start..].join(" | ");
    if t.len() > 300 {
        format!("...{}", &t[t.len() - 300..])
    } else {
        t
    }
}

impl Stage for Exec {
    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        if let Some(dir) = &self.dir {
            let out = dir.join(super::template::render(&self.opts.filename, &item)?);
            self.claims.claim(&out, &item.path)?;
            item.meta.outputs.push(out);
        }
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let out = match &self.dir {
            Some(dir) => Some(dir.join(super::template::render(&self.opts.filename, &item)?)),
            None => None,
        };
        if let Some(o) = &out {
            self.claims.claim(o, &item.path)?;
        }
        let tmp = out.as_deref().map(crate::exec::cleanup::temp_path_for);
        if let Some(parent) = tmp.as_ref().and_then(|t| t.parent()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StageError(format!("cannot create {}: {e}", parent.display())))?;
        }
        let path = item.path.to_string_lossy().into_owned();
        let rel = item.rel_str();
        let stem = item
            .rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out_s = tmp
            .as_ref()
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fill = |arg: &str, quote: bool| {
            let q = |s: &str| if quote { shell_quote(s) } else { s.to_string() };
            arg.replace("{path}", &q(&path))
                .replace("{rel}", &q(&rel))
                .replace("{stem}", &q(&stem))
                .replace("{out}", &q(&out_s))
        };
        let mut cmd = if self.opts.shell {
            let mut c = Command::new("sh");
            c.arg("-c").arg(fill(&self.opts.command[0], true));
            c
        } else {
            let mut c = Command::new(fill(&self.opts.command[0], false));
            c.args(self.opts.command[1..].iter().map(|a| fill(a, false)));
            c
        };
        let cleanup = || {
            if let Some(t) = &tmp {
                let _ = std::fs::remove_file(t);
            }
        };
        // The command dies with whoever runs it (a worker killed for a
        // timeout must not leave it behind). Only async-signal-safe calls.
        // SAFETY: prctl is async-signal-safe and touches no memory.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| StageError(format!("cannot run `{}`: {e}", self.opts.command[0])))?;
        // Read stderr on the side so a chatty command can't fill the pipe
        // and stall.
        let reader = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = e.read_to_end(&mut buf);
                buf
            })
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {
                    if let Some(limit) = self.timeout
                        && started.elapsed() >= limit
                    {
                        let _ = child.kill();
                        let _ = child.wait();
                        cleanup();
                        return Err(StageError(format!(
                            "`{}` timed out after {:.1}s",
                            self.opts.command[0],
                            limit.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    cleanup();
                    return Err(StageError(format!(
                        "waiting for `{}`: {e}",
                        self.opts.command[0]
                    )));
                }
            }
        };
        let stderr = reader.and_then(|r| r.join().ok()).unwrap_or_default();
        if !status.success() {
            cleanup();
            let how = match status.code() {
                Some(c) => format!("exited with code {c}"),
                None => "was killed by a signal".to_string(),
            };
            let t = tail(&stderr);
            let sep = if t.is_empty() { "" } else { ": " };
            return Err(StageError(format!(
                "`{}` {how}{sep}{t}",
                self.opts.command[0]
            )));
        }
        if let (Some(tmp), Some(out)) = (tmp, out) {
            if !tmp.exists() {
                return Err(StageError(format!(
                    "`{}` did not write {{out}}",
                    self.opts.command[0]
                )));
            }
            std::fs::rename(&tmp, &out).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                StageError(format!("cannot move the output to {}: {e}", out.display()))
            })?;
            item.meta.outputs.push(out);
        }
        Ok(Some(item))
    }

    fn output_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A program given as a path (with a `/`) is a file the outputs depend
    /// on; one found on `PATH`, or a shell command, is not followed.
    fn depends_on(&self) -> Vec<PathBuf> {
        match self.opts.command.first() {
            Some(p) if !self.opts.shell && p.contains('/') && !p.contains('{') => {
                vec![PathBuf::from(p)]
            }
            _ => Vec::new(),
        }
    }
}
