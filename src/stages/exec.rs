//! `exec`: run an external command per item, with placeholders for the
//! item's paths; no shell unless asked, and even then file names never enter
//! the command's text (they are `sh`'s positional parameters). A command's
//! output file appears whole or not at all: it writes a temp file that the
//! output guard places on success.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, PayloadType, Types};
use crate::output::{Replace, Request};
use crate::stage::{
    BuildContext, Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions,
};

/// Options of `exec`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExecOptions {
    /// The program and its arguments, e.g. ["cjpeg", "-outfile", "{out}",
    /// "{path}"]. Placeholders: `{path}` (the source file), `{rel}` (its path
    /// relative to the scan root), `{stem}`, `{out}` (the output file, from
    /// `dir` and `filename`).
    pub command: Vec<String>,
    /// Run `command`'s single string with `sh -c`. Placeholders are written
    /// bare (`cp {path} {out}`) and become the quoted positional parameters
    /// `"$1"` (path), `"$2"` (rel), `"$3"` (stem), `"$4"` (out): file names
    /// never enter the command's text. A placeholder inside quotes is an
    /// error.
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
        if self.shell
            && let Some(script) = self.command.first()
            && let Err(e) = shell_script(script)
        {
            errors.push(e);
        }
        errors.extend(super::template::validate(&self.filename, "filename"));
        errors
    }
}

/// The placeholders of `exec`, in the order of `sh`'s positional parameters.
const SHELL_PARAMS: [&str; 4] = ["{path}", "{rel}", "{stem}", "{out}"];

/// Turn a `shell = true` command into a script that reads the placeholders
/// from its positional parameters. Refuses a placeholder written inside
/// quotes: `"{path}"` would become `""$1""`, which the shell splits.
fn shell_script(script: &str) -> Result<String, OptionError> {
    let mut out = String::with_capacity(script.len() + 16);
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut rest = script;
    while let Some(c) = rest.chars().next() {
        if !escaped && let Some(n) = SHELL_PARAMS.iter().position(|p| rest.starts_with(p)) {
            if single || double {
                let ph = SHELL_PARAMS[n];
                return Err(OptionError::at(
                    "command",
                    format!("`{ph}` is inside quotes in a `shell = true` command"),
                )
                .help(format!(
                    "write it bare, e.g. `cp {{path}} {{out}}`: conveyor passes it to sh as \"${}\", already quoted, so no file name can run a command",
                    n + 1
                )));
            }
            out.push_str(&format!("\"${}\"", n + 1));
            rest = &rest[SHELL_PARAMS[n].len()..];
            continue;
        }
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

/// `exec` with `dir` names files under it.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    super::writes_under(t, |o: ExecOptions| o.dir.map(|d| (d, o.filename)))
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "exec",
        paths,
        summary: "run an external command per item ({path}, {rel}, {stem}, {out}); non-zero exit fails the item",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(ExecOptions),
        check: crate::stage::check_options::<ExecOptions>,
        meaning: crate::stage::meaning::<ExecOptions>,
        revision: 1,
        build: |t, ctx: &BuildContext| {
            let opts: ExecOptions = crate::stage::parse_options(t)?;
            let script = match (opts.shell, opts.command.first()) {
                (true, Some(s)) => Some(shell_script(s).map_err(|e| e.message)?),
                _ => None,
            };
            Ok(Built::Stage(Arc::new(Exec {
                dir: opts.dir.as_ref().map(PathBuf::from),
                opts,
                script,
                timeout: ctx.timeout,
                stage: ctx.stage.clone(),
                output: ctx.output.clone(),
            })))
        },
    }
}

struct Exec {
    opts: ExecOptions,
    dir: Option<PathBuf>,
    /// With `shell = true`: the script, placeholders turned into `"$1"`...
    script: Option<String>,
    timeout: Option<Duration>,
    stage: String,
    output: crate::output::Guard,
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

impl Exec {
    fn request<'a>(&'a self, item: &'a Item, dir: &'a Path, rel: &'a Path) -> Request<'a> {
        Request {
            stage: &self.stage,
            source: Some(&item.path),
            dir,
            rel,
            replace: Replace::Outputs,
            claim: true,
        }
    }

    /// The command for `item`, writing to `out` (a temp path) if any.
    fn command(&self, item: &Item, out: Option<&Path>) -> Command {
        let path = item.path.as_os_str();
        let rel = item.rel.as_os_str();
        let stem = item.rel.file_stem().unwrap_or_default();
        let out = out.map(Path::as_os_str).unwrap_or_default();
        if let Some(script) = &self.script {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(script)
                .arg("sh")
                .args([path, rel, stem, out]);
            return c;
        }
        // Without a shell every argument is passed as is: a placeholder is
        // replaced by the name's own bytes.
        let fill = |arg: &str| -> OsString {
            let mut result = OsString::new();
            let mut rest = arg;
            while let Some(i) = rest.find('{') {
                let tail = &rest[i..];
                let hit = [
                    ("{path}", path),
                    ("{rel}", rel),
                    ("{stem}", stem),
                    ("{out}", out),
                ]
                .into_iter()
                .find(|(p, _)| tail.starts_with(p));
                result.push(&rest[..i]);
                match hit {
                    Some((p, v)) => {
                        result.push(v);
                        rest = &tail[p.len()..];
                    }
                    None => {
                        result.push("{");
                        rest = &tail[1..];
                    }
                }
            }
            result.push(rest);
            result
        };
        let mut c = Command::new(fill(&self.opts.command[0]));
        c.args(self.opts.command[1..].iter().map(|a| fill(a)));
        c
    }

    /// Run the command for `item` to its end (or its timeout).
    fn run(&self, item: &Item, out: Option<&Path>) -> Result<(), StageError> {
        let mut cmd = self.command(item, out);
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
        let program = &self.opts.command[0];
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| StageError::new(format!("cannot run `{program}`: {e}")))?;
        // Read stderr on the side so a chatty command can't fill the pipe
        // and stall.
        let reader = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = e.read_to_end(&mut buf);
                buf
            })
        });
        let status = self.wait(&mut child)?;
        let stderr = reader.and_then(|r| r.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let how = match status.code() {
            Some(c) => format!("exited with code {c}"),
            None => "was killed by a signal".to_string(),
        };
        let t = tail(&stderr);
        let sep = if t.is_empty() { "" } else { ": " };
        Err(StageError::new(format!("`{program}` {how}{sep}{t}")))
    }

    fn wait(
        &self,
        child: &mut std::process::Child,
    ) -> Result<std::process::ExitStatus, StageError> {
        let program = &self.opts.command[0];
        let started = Instant::now();
        loop {
            match crate::cputime::reap(child) {
                Ok(Some((s, used))) => {
                    // The command's CPU time is this stage's work.
                    crate::cputime::add_elsewhere(used.cpu);
                    return Ok(s);
                }
                Ok(None) => {
                    if let Some(limit) = self.timeout
                        && started.elapsed() >= limit
                    {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(StageError::new(format!(
                            "`{program}` timed out after {:.1}s",
                            limit.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(StageError::new(format!("waiting for `{program}`: {e}"))),
            }
        }
    }
}

impl Stage for Exec {
    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        if let Some(dir) = &self.dir {
            let rel = super::template::render(&self.opts.filename, &item)?;
            let out = self.output.plan(&self.request(&item, dir, &rel))?;
            item.meta.outputs.push(out);
        }
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let Some(dir) = &self.dir else {
            self.run(&item, None)?;
            return Ok(Some(item));
        };
        let rel = super::template::render(&self.opts.filename, &item)?;
        let out = self
            .output
            .place_with(&self.request(&item, dir, &rel), |tmp| {
                self.run(&item, Some(tmp))
            })?;
        item.meta.outputs.push(out);
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
