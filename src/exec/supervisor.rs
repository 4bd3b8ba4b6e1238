//! The parent side of processes mode: one supervisor per worker slot starts a
//! child (conveyor's own binary with a hidden argument), hands it one item at
//! a time, and turns every way a child can die (panic, abort, signal, hang
//! past `timeout`, `memory_limit`) into that one item's failure, then starts
//! a fresh child for the next item.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};

use super::protocol::{Bootstrap, FromWorker, StageInit, ToWorker, WORKER_ARG, WireItem};
use super::{CallError, Outcome};
use crate::config::StageDef;
use crate::item::Item;
use crate::units::format_size;

/// How long a new worker may take to connect and build its stage.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// After Ctrl-C, how long an item in a worker may still take.
const INTERRUPT_GRACE: Duration = Duration::from_millis(1500);
/// How often a wait for a worker looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(100);
/// Lines of a worker's stderr kept to explain its death.
const STDERR_LINES: usize = 20;

/// What a worker said on stderr, kept to explain its death.
#[derive(Default)]
struct Said {
    /// The last lines.
    tail: VecDeque<String>,
    /// The first "memory allocation of N bytes failed" line, however much
    /// followed it: the allocator's own report that `memory_limit` was hit.
    /// Kept apart because what follows it (a backtrace when RUST_BACKTRACE
    /// is set, a second failed allocation while printing that) would push it
    /// out of `tail` and leave only a bare SIGABRT to report.
    alloc_failed: Option<String>,
}

/// The executable that serves as a worker: this very program.
pub fn worker_exe() -> PathBuf {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        proc_exe
    } else {
        std::env::current_exe().unwrap_or(proc_exe)
    }
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
}

impl ChainProcesses {
    /// `defs` are consecutive stages with the same worker settings.
    pub fn new(defs: &[&StageDef], exe: PathBuf, run_dir: Option<PathBuf>) -> ChainProcesses {
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
                })
                .collect(),
            timeouts: defs.iter().map(|d| d.timeout).collect(),
            memory_limit: first.memory_limit,
            max_items_per_worker: first.max_items_per_worker,
            exe,
            crashes_in_a_row: AtomicU32::new(0),
            crash_limit: (2 * (first.retries + 1)).max(5),
            started: AtomicU32::new(0),
        }
    }
}

/// A running child and its channels.
struct Worker {
    child: Child,
    tx: Option<IpcSender<ToWorker>>,
    rx: IpcReceiver<FromWorker>,
    stderr: Arc<Mutex<Said>>,
    stderr_thread: Option<JoinHandle<()>>,
    items: u64,
}

/// A dead worker's exit status and what it said.
type Death = (Option<ExitStatus>, Said);

fn take_said(said: &Mutex<Said>) -> Said {
    std::mem::take(&mut *said.lock().unwrap_or_else(|e| e.into_inner()))
}

impl Worker {
    /// Kill (if still running) and reap the child; returns how it ended.
    fn kill(mut self) -> Death {
        let _ = self.child.kill();
        self.reap()
    }

    /// Wait for the child to end (it has ended or been killed) and collect
    /// the last of what it said.
    fn reap(mut self) -> Death {
        self.tx.take();
        let status = self.child.wait().ok();
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        (status, take_said(&self.stderr))
    }

    /// Let the child finish on its own (its input closes), killing it if it
    /// does not within a second.
    fn shut_down(mut self) {
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
fn describe_death(status: Option<ExitStatus>, said: &Said, memory_limit: Option<u64>) -> String {
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

/// One worker slot of a chain in processes mode.
pub struct Slot<'a> {
    stage: &'a ChainProcesses,
    /// PID of the current worker (0: none yet), for naming trace tracks.
    pid: Arc<AtomicU32>,
    interrupt: &'a AtomicBool,
    worker: Option<Worker>,
    interrupted_at: Option<Instant>,
}

impl<'a> Slot<'a> {
    pub fn new(stage: &'a ChainProcesses, interrupt: &'a AtomicBool) -> Slot<'a> {
        Slot {
            stage,
            pid: Arc::new(AtomicU32::new(0)),
            interrupt,
            worker: None,
            interrupted_at: None,
        }
    }

    /// Where the current worker's PID can be read.
    pub fn pid_handle(&self) -> Arc<AtomicU32> {
        Arc::clone(&self.pid)
    }

    fn spawn(&self) -> Result<Worker, String> {
        let (server, name) = IpcOneShotServer::<Bootstrap>::new()
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        let mut cmd = Command::new(&self.stage.exe);
        cmd.arg(WORKER_ARG)
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // With RUST_BACKTRACE set, the allocator's out-of-memory report
            // is followed by a backtrace, symbolised with more allocations
            // in a process that has just run out (a second failure, or
            // seconds of work). Nobody reads it: a worker's death is told
            // from its first failed allocation or its last line.
            .env("RUST_BACKTRACE", "0");
        let parent = unsafe { libc::getpid() };
        let limit = self.stage.memory_limit;
        // Only async-signal-safe calls here: no allocation between fork and
        // exec.
        unsafe {
            cmd.pre_exec(move || {
                // Die with conveyor, even if it is killed with SIGKILL.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                // A terminal's Ctrl-C reaches the whole process group;
                // conveyor decides when its workers stop.
                libc::signal(libc::SIGINT, libc::SIG_IGN);
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
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.stage.exe.display()))?;
        super::cleanup::watch_worker(child.id());
        self.pid.store(child.id(), Ordering::Relaxed);
        tracing::info!(stage = %self.stage.names.join("+"), pid = child.id(), "worker started");
        let stderr = Arc::new(Mutex::new(Said::default()));
        let stderr_thread = child.stderr.take().map(|pipe| {
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
                    let mut s = said.lock().unwrap_or_else(|e| e.into_inner());
                    if s.alloc_failed.is_none() && is_alloc_failure(&line) {
                        s.alloc_failed = Some(line.clone());
                    }
                    if s.tail.len() == STDERR_LINES {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(line);
                }
            })
        });

        // accept() has no timeout and never returns if the child dies first:
        // it runs on a helper thread, unblocked by connecting to it ourselves.
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let acceptor = std::thread::spawn(move || {
            let _ = done_tx.send(server.accept().map(|(_, boot)| boot));
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let connected = loop {
            match done_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok(boot)) => break Ok(boot),
                Ok(Err(e)) => break Err(format!("worker did not connect: {e:?}")),
                Err(_) => {
                    let died = child.try_wait().ok().flatten();
                    if died.is_some() || Instant::now() > deadline {
                        if died.is_none() {
                            let _ = child.kill();
                        }
                        let _ = IpcSender::<Bootstrap>::connect(name.clone());
                        let _ = done_rx.recv_timeout(Duration::from_secs(1));
                        break Err(String::new());
                    }
                }
            }
        };
        let _ = acceptor.join();
        let worker = match connected {
            Ok((tx, rx)) => Worker {
                child,
                tx: Some(tx),
                rx,
                stderr,
                stderr_thread,
                items: 0,
            },
            Err(detail) => {
                let status = child.wait().ok();
                if let Some(t) = stderr_thread {
                    let _ = t.join();
                }
                let said = take_said(&stderr);
                let why = if detail.is_empty() {
                    describe_death(status, &said, self.stage.memory_limit)
                } else {
                    detail
                };
                let hint = if self.stage.memory_limit.is_some() {
                    " (is memory_limit too low for a worker to start?)"
                } else {
                    ""
                };
                return Err(format!("a worker exited before it connected: {why}{hint}"));
            }
        };
        let init = ToWorker::Init(self.stage.inits.clone());
        let sent = worker.tx.as_ref().map(|tx| tx.send(init));
        if !matches!(sent, Some(Ok(()))) {
            let (status, said) = worker.kill();
            return Err(format!(
                "a worker died while starting: {}",
                describe_death(status, &said, self.stage.memory_limit)
            ));
        }
        match worker.rx.try_recv_timeout(START_TIMEOUT) {
            Ok(FromWorker::Ready) => Ok(worker),
            Ok(FromWorker::InitFailed(e)) => {
                worker.shut_down();
                Err(format!("a worker could not build the stage: {e}"))
            }
            Ok(_) => {
                worker.shut_down();
                Err("a worker answered out of turn while starting".into())
            }
            Err(_) => {
                let (status, said) = worker.kill();
                Err(format!(
                    "a worker died while starting: {}",
                    describe_death(status, &said, self.stage.memory_limit)
                ))
            }
        }
    }

    /// The item's worker died or was killed: count it, and give up on the
    /// stage when workers keep dying without finishing anything.
    fn crashed(&self, at: usize, reason: String) -> CallError {
        let n = self.stage.crashes_in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(stage = %self.stage.names.get(at).map_or("?", String::as_str), "worker lost: {reason}");
        if n >= self.stage.crash_limit {
            CallError::Fatal(format!(
                "{reason}; workers of stage `{}` crashed {n} times in a row without finishing an item, so the stage stopped",
                self.stage.names.get(at).map_or("?", String::as_str)
            ))
        } else {
            CallError::Item(reason)
        }
    }

    fn finished(&mut self) {
        self.stage.crashes_in_a_row.store(0, Ordering::SeqCst);
        let recycle = match (&mut self.worker, self.stage.max_items_per_worker) {
            (Some(w), Some(max)) => {
                w.items += 1;
                w.items >= max
            }
            _ => false,
        };
        if recycle && let Some(w) = self.worker.take() {
            w.shut_down();
        }
    }

    /// Take one item through the chain in a worker, starting one if needed.
    pub fn call(&mut self, item: Item) -> Outcome {
        let n = self.stage.names.len();
        let mut busy = vec![Duration::ZERO; n];
        let mut at = 0;
        let mut started = Instant::now();
        let result = self.call_inner(item, &mut at, &mut started, &mut busy);
        if let Some(b) = busy.get_mut(at) {
            *b += started.elapsed();
        }
        Outcome { result, at, busy }
    }

    fn call_inner(
        &mut self,
        item: Item,
        at: &mut usize,
        started: &mut Instant,
        busy: &mut [Duration],
    ) -> Result<Option<Item>, CallError> {
        if self.worker.is_none() {
            let w = self.spawn().map_err(|e| {
                CallError::Fatal(format!(
                    "stage `{}` cannot start its workers: {e}",
                    self.stage.names[0]
                ))
            })?;
            self.worker = Some(w);
            self.stage.started.fetch_add(1, Ordering::Relaxed);
            // Starting a worker is the stage's cost too, but not the item's
            // time limit's.
            *started = Instant::now();
        }
        let Some(worker) = self.worker.as_mut() else {
            return Err(CallError::Fatal("no worker".into()));
        };
        let sent = worker
            .tx
            .as_ref()
            .map(|tx| tx.send(ToWorker::Item(Box::new(WireItem::from(item)))));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.lost_worker(*at, false));
        }
        let deadline_for = |k: usize, from: Instant| {
            self.stage
                .timeouts
                .get(k)
                .copied()
                .flatten()
                .map(|t| (from + t, t))
        };
        let mut deadline = deadline_for(0, *started);
        loop {
            let mut wait = POLL;
            if let Some((d, _)) = deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            let Some(worker) = self.worker.as_mut() else {
                return Err(CallError::Fatal("no worker".into()));
            };
            match worker.rx.try_recv_timeout(wait) {
                Ok(FromWorker::Enter(k)) if k > *at && k < busy.len() => {
                    let now = Instant::now();
                    busy[*at] += now - *started;
                    *at = k;
                    *started = now;
                    deadline = deadline_for(k, now);
                }
                Ok(FromWorker::Done { at: k, result }) if k < busy.len() => {
                    if k != *at {
                        let now = Instant::now();
                        busy[*at] += now - *started;
                        *at = k;
                        *started = now;
                    }
                    self.finished();
                    return match result {
                        Ok(Some(w)) => Item::try_from(*w).map(Some).map_err(CallError::Item),
                        Ok(None) => Ok(None),
                        Err(msg) => Err(CallError::Item(msg)),
                    };
                }
                Ok(FromWorker::Panicked { at: k, message }) => {
                    if k < busy.len() {
                        *at = k;
                    }
                    if let Some(w) = self.worker.take() {
                        let _ = w.reap();
                    }
                    return Err(self.crashed(*at, format!("worker panicked: {message}")));
                }
                Ok(_) => {
                    if let Some(w) = self.worker.take() {
                        let _ = w.kill();
                    }
                    return Err(self.crashed(*at, "worker answered out of turn".into()));
                }
                Err(TryRecvError::Empty) => {
                    if self.interrupt.load(Ordering::Relaxed) {
                        let since = *self.interrupted_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= INTERRUPT_GRACE {
                            if let Some(w) = self.worker.take() {
                                let _ = w.kill();
                            }
                            return Err(CallError::Cancelled);
                        }
                    }
                    if let Some((d, t)) = deadline
                        && Instant::now() >= d
                    {
                        if let Some(w) = self.worker.take() {
                            let _ = w.kill();
                        }
                        return Err(
                            self.crashed(*at, format!("timed out after {}", format_duration(t)))
                        );
                    }
                }
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => {
                    return Err(self.lost_worker(*at, true));
                }
                Err(TryRecvError::IpcError(_)) => return Err(self.lost_worker(*at, false)),
            }
        }
    }

    /// The worker stopped answering: find out how it ended.
    fn lost_worker(&mut self, at: usize, ended: bool) -> CallError {
        let Some(w) = self.worker.take() else {
            return CallError::Fatal("no worker".into());
        };
        let (status, said) = if ended { w.reap() } else { w.kill() };
        self.crashed(at, describe_death(status, &said, self.stage.memory_limit))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            if self.interrupt.load(Ordering::Relaxed) {
                let _ = w.kill();
            } else {
                w.shut_down();
            }
        }
    }
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
