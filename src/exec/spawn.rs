//! Starting a worker process and telling how one died: the settings a
//! chain's workers share, the command (its
//! limits set between fork and exec), a reader of its stderr, the
//! connection back to conveyor with a deadline, and the stage built in it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};

use super::protocol::{Bootstrap, FromWorker, StageInit, ToWorker, WORKER_ARG};
use crate::config::StageDef;
use crate::units::format_size;

/// How long a new worker may take to connect and build its stage.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a worker's stderr kept to explain its death.
const STDERR_LINES: usize = 20;

/// What a worker said on stderr, kept to explain its death.
#[derive(Default)]
pub(super) struct Said {
    /// The last lines.
    tail: VecDeque<String>,
    /// The first "memory allocation of N bytes failed" line, however much
    /// followed it: the allocator's own report that `memory_limit` was hit.
    /// Kept apart because what follows it (a backtrace when RUST_BACKTRACE
    /// is set, a second failed allocation while printing that) would push it
    /// out of `tail` and leave only a bare SIGABRT to report.
    alloc_failed: Option<String>,
}

/// What every slot of a chain of stages shares. A chain is one stage, or
/// consecutive processes-mode stages that share their workers.
pub struct ChainProcesses {
    /// Names of the chain's stages, in order.
    pub names: Vec<String>,
    pub inits: Vec<StageInit>,
    /// Per-item time limit of each stage.
    pub timeouts: Vec<Option<Duration>>,
    pub memory_limit: Option<u64>,
    pub max_items_per_worker: Option<u64>,
    pub exe: PathBuf,
    /// Crashes since an item last finished, across the chain's workers.
    pub crashes_in_a_row: AtomicU32,
    /// After this many crashes in a row the chain gives up.
    pub crash_limit: u32,
    /// Workers started so far (first ones, replacements, recycled).
    pub started: AtomicU32,
    /// Every reader of the chain's items is a chain of workers: large
    /// pixels are handed over in shared memory, never copied in conveyor.
    pub hand_over: bool,
}

impl ChainProcesses {
    /// `defs` are consecutive stages with the same worker settings;
    /// `threads` is each worker's share of the cores.
    pub fn new(
        defs: &[&StageDef],
        exe: PathBuf,
        run_dir: Option<PathBuf>,
        threads: usize,
    ) -> ChainProcesses {
        let first = defs[0];
        ChainProcesses {
            names: defs.iter().map(|d| d.name.clone()).collect(),
            inits: defs
                .iter()
                .map(|d| StageInit {
                    name: d.name.clone(),
                    kind: d.kind.name.to_string(),
                    options: toml::to_string(&d.options).unwrap_or_default(),
                    timeout: d.timeout,
                    run_dir: run_dir.clone(),
                    threads,
                })
                .collect(),
            timeouts: defs.iter().map(|d| d.timeout).collect(),
            memory_limit: first.memory_limit,
            max_items_per_worker: first.max_items_per_worker,
            exe,
            crashes_in_a_row: AtomicU32::new(0),
            crash_limit: (2 * (first.retries + 1)).max(5),
            started: AtomicU32::new(0),
            hand_over: false,
        }
    }
}

/// A running child and its channels.
pub(super) struct Worker {
    pub(super) child: Child,
    pub(super) tx: Option<IpcSender<ToWorker>>,
    pub(super) rx: IpcReceiver<FromWorker>,
    stderr: Arc<Mutex<Said>>,
    stderr_thread: Option<JoinHandle<()>>,
    pub(super) items: u64,
    /// Shared memory for large pixels: to the worker, and from it.
    pub(super) to_slot: super::protocol::Slot,
    pub(super) from_slot: super::protocol::Slot,
    /// Leases of the worker's memory that conveyor is done with.
    pub(super) returns: super::protocol::Returns,
}

/// A dead worker's exit status and what it said.
pub(super) type Death = (Option<ExitStatus>, Said);

fn take_said(said: &Mutex<Said>) -> Said {
    std::mem::take(&mut *said.lock().unwrap_or_else(|e| e.into_inner()))
}

impl Worker {
    /// Ask the child to stop: at once if it has placed none of its item's
    /// files, after answering if it has.
    pub(super) fn ask_to_stop(&self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal, to our own child.
            unsafe {
                libc::kill(pid, super::worker::stop::STOP_SIGNAL);
            }
        }
    }

    /// Kill (if still running) and reap the child; returns how it ended.
    pub(super) fn kill(mut self) -> Death {
        let _ = self.child.kill();
        self.reap()
    }

    /// Wait for the child to end (it has ended or been killed) and collect
    /// the last of what it said.
    pub(super) fn reap(mut self) -> Death {
        self.tx.take();
        let status = self.child.wait().ok();
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        (status, take_said(&self.stderr))
    }

    /// Let the child finish on its own (its input closes), killing it if it
    /// does not within a second.
    pub(super) fn shut_down(mut self) {
        tracing::debug!(pid = self.child.id(), "worker stopping");
        self.tx.take();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.kill();
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "signal",
    }
}

/// Whether a line of a worker's stderr is the Rust allocator reporting a
/// failed allocation (the default alloc error hook's message).
fn is_alloc_failure(line: &str) -> bool {
    line.contains("memory allocation of") && line.contains("failed")
}

/// Why a worker died, in words a user can act on.
pub(super) fn describe_death(
    status: Option<ExitStatus>,
    said: &Said,
    memory_limit: Option<u64>,
) -> String {
    if let (Some(limit), Some(line)) = (memory_limit, &said.alloc_failed) {
        return format!(
            "memory limit {} exceeded ({})",
            format_size(limit),
            line.trim()
        );
    }
    let last = said
        .tail
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string());
    let base = match status {
        Some(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => format!("worker killed by signal {sig} ({})", signal_name(sig)),
            (None, Some(code)) => format!("worker exited with code {code}"),
            _ => "worker ended".to_string(),
        },
        None => "worker vanished".to_string(),
    };
    match last {
        Some(l) => format!("{base}: {l}"),
        None => base,
    }
}

/// Why a worker could not be started. The texts are what the user reads
/// after "stage `x` cannot start its workers: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SpawnError {
    Channel(String),
    Start { exe: String, reason: String },
    NotConnected { why: String, memory_limited: bool },
    DiedStarting(String),
    BuildFailed(String),
    OutOfTurn,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Channel(e) => write!(f, "cannot open a channel: {e}"),
            SpawnError::Start { exe, reason } => write!(f, "cannot start {exe}: {reason}"),
            SpawnError::NotConnected {
                why,
                memory_limited,
            } => {
                let hint = if *memory_limited {
                    " (is memory_limit too low for a worker to start?)"
                } else {
                    ""
                };
                write!(f, "a worker exited before it connected: {why}{hint}")
            }
            SpawnError::DiedStarting(why) => write!(f, "a worker died while starting: {why}"),
            SpawnError::BuildFailed(e) => write!(f, "a worker could not build the stage: {e}"),
            SpawnError::OutOfTurn => f.write_str("a worker answered out of turn while starting"),
        }
    }
}

/// Start a worker for `stage`, connect to it and build the chain in it.
pub(super) fn spawn(stage: &ChainProcesses) -> Result<Worker, SpawnError> {
    let (server, name) =
        IpcOneShotServer::<Bootstrap>::new().map_err(|e| SpawnError::Channel(e.to_string()))?;
    let mut child = command(stage, &name)
        .spawn()
        .map_err(|e| SpawnError::Start {
            exe: stage.exe.display().to_string(),
            reason: e.to_string(),
        })?;
    super::cleanup::watch_worker(child.id());
    tracing::info!(stage = %stage.names.join("+"), pid = child.id(), "worker started");
    let (stderr, stderr_thread) = read_stderr(&mut child);
    let worker = match connect(server, &name, &mut child) {
        Ok((tx, rx)) => Worker {
            child,
            tx: Some(tx),
            rx,
            stderr,
            stderr_thread,
            items: 0,
            to_slot: Default::default(),
            from_slot: Default::default(),
            returns: Default::default(),
        },
        Err(detail) => {
            let status = child.wait().ok();
            if let Some(t) = stderr_thread {
                let _ = t.join();
            }
            let said = take_said(&stderr);
            let why = detail.unwrap_or_else(|| describe_death(status, &said, stage.memory_limit));
            return Err(SpawnError::NotConnected {
                why,
                memory_limited: stage.memory_limit.is_some(),
            });
        }
    };
    handshake(stage, worker)
}

/// The worker's command: this program with the worker argument, its memory
/// limit set and Ctrl-C ignored between fork and exec.
fn command(stage: &ChainProcesses, server: &str) -> Command {
    let mut cmd = Command::new(&stage.exe);
    cmd.arg(WORKER_ARG)
        .arg(server)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // With RUST_BACKTRACE set, the allocator's out-of-memory report
        // is followed by a backtrace, symbolised with more allocations
        // in a process that has just run out (a second failure, or
        // seconds of work). Nobody reads it: a worker's death is told
        // from its first failed allocation or its last line.
        .env("RUST_BACKTRACE", "0");
    let parent = std::process::id() as libc::pid_t;
    let limit = stage.memory_limit;
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe calls (prctl, getppid, _exit, signal, setrlimit):
    // no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            // Die with conveyor, even if it is killed with SIGKILL.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            // A terminal's Ctrl-C, a closing terminal's SIGHUP and a
            // supervisor's SIGTERM (systemd, scancel, `kill -- -PGID`)
            // reach the whole process group; conveyor decides when its
            // workers stop, so the items they hold finish.
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            if let Some(bytes) = limit {
                let rl = libc::rlimit {
                    rlim_cur: bytes as libc::rlim_t,
                    rlim_max: bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_DATA, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// Keep what the worker says on stderr, on a thread of its own.
fn read_stderr(child: &mut Child) -> (Arc<Mutex<Said>>, Option<JoinHandle<()>>) {
    let stderr = Arc::new(Mutex::new(Said::default()));
    let thread = child.stderr.take().map(|pipe| {
        let said = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while reader
                .read_until(b'\n', &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                buf.clear();
                said.lock().unwrap_or_else(|e| e.into_inner()).hear(line);
            }
        })
    });
    (stderr, thread)
}

impl Said {
    fn hear(&mut self, line: String) {
        if self.alloc_failed.is_none() && is_alloc_failure(&line) {
            self.alloc_failed = Some(line.clone());
        }
        if self.tail.len() == STDERR_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

/// Wait for the worker to connect. `accept()` has no timeout and never
/// returns if the child dies first: it runs on a helper thread, unblocked by
/// connecting to it ourselves. `Err(None)`: the worker died (or hung) first.
fn connect(
    server: IpcOneShotServer<Bootstrap>,
    name: &str,
    child: &mut Child,
) -> Result<Bootstrap, Option<String>> {
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let acceptor = std::thread::spawn(move || {
        let _ = done_tx.send(server.accept().map(|(_, boot)| boot));
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let connected = loop {
        match done_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(boot)) => break Ok(boot),
            Ok(Err(e)) => break Err(Some(format!("worker did not connect: {e:?}"))),
            Err(_) => {
                let died = child.try_wait().ok().flatten();
                if died.is_some() || Instant::now() > deadline {
                    if died.is_none() {
                        let _ = child.kill();
                    }
                    let _ = IpcSender::<Bootstrap>::connect(name.to_string());
                    let _ = done_rx.recv_timeout(Duration::from_secs(1));
                    break Err(None);
                }
            }
        }
    };
    let _ = acceptor.join();
    connected
}

/// Send the chain's stages to a connected worker and wait until it has
/// built them.
fn handshake(stage: &ChainProcesses, worker: Worker) -> Result<Worker, SpawnError> {
    let init = ToWorker::Init {
        stages: stage.inits.clone(),
        hand_over: stage.hand_over,
    };
    let sent = worker.tx.as_ref().map(|tx| tx.send(init));
    if !matches!(sent, Some(Ok(()))) {
        let (status, said) = worker.kill();
        return Err(SpawnError::DiedStarting(describe_death(
            status,
            &said,
            stage.memory_limit,
        )));
    }
    match worker.rx.try_recv_timeout(START_TIMEOUT) {
        Ok(FromWorker::Ready) => Ok(worker),
        Ok(FromWorker::InitFailed(e)) => {
            worker.shut_down();
            Err(SpawnError::BuildFailed(e))
        }
        Ok(_) => {
            worker.shut_down();
            Err(SpawnError::OutOfTurn)
        }
        Err(_) => {
            let (status, said) = worker.kill();
            Err(SpawnError::DiedStarting(describe_death(
                status,
                &said,
                stage.memory_limit,
            )))
        }
    }
}
